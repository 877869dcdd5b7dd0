"""Every exception prefloop raises on purpose, in one module (as rq keeps its own), so no domain imports another
for its errors and the error handlers import only this."""

from __future__ import annotations

import click


class BadInput(ValueError):
    """Input that gets a clear 4xx and stores nothing."""

    def __init__(self, message: str, status: int = 400, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds, sent as Retry-After (with a 429)


class RegistryError(BadInput):
    """A version cannot be activated; the message says why (409 unless it names a missing version)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message, status)


class PoolEmpty(LookupError):
    """No prompt in the pool is waiting for an answer."""


class Busy(RuntimeError):
    """The model cannot sample this request within MAX_WAIT_SECONDS now: a 503 with Retry-After; nothing is stored."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NoModel(RuntimeError):
    """No model can be served yet."""


class QueueUnavailable(RuntimeError):
    """Redis is not configured or not reachable: training cannot be queued right now."""


class StoreError(RuntimeError):
    """The store could not be read or written, or what it holds does not match its manifest."""


class ConfigError(RuntimeError):
    """A setting that stops start-up, with a message that says what to set."""


class CommandFailed(click.ClickException):
    """A command's clear error, for the flask CLI and the worker's commands alike: `error: ...`, exit status 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)
