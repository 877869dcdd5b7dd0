"""Servers the tests and benchmarks run for real: a scratch Postgres schema reset, moto's S3 server."""

from __future__ import annotations

import os


class ServerUnavailable(RuntimeError):
    """A server the caller needs could not be started here; the tests skip (or fail in CI) on it."""


def reset_postgres(url: str) -> None:
    """Drop everything in the public schema so migrations start from nothing."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public;"))
    engine.dispose()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class S3Server:
    """moto's standalone server (the PyPI package `moto[server]`): a real S3-compatible HTTP endpoint, in memory.

    Not a mock inside the process: boto3 talks HTTP to it as it would to MinIO or AWS, conditional PUTs included."""

    def __init__(self) -> None:
        import socket
        import subprocess
        import sys
        import time
        import urllib.request

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
        self.proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=1)
                break
            except Exception as exc:  # noqa: BLE001
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise ServerUnavailable(f"moto_server did not start: {exc}") from exc
                time.sleep(0.2)

    @property
    def env(self) -> dict:
        """The AWS_* variables that point boto3 at this server."""
        return S3_ENV | {"AWS_ENDPOINT_URL": self.url}

    def bucket(self, name: str) -> str:
        """Create a bucket and return its s3:// URL."""
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            self.proc.kill()
