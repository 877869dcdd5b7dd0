"""Flask CLI: users, prompts, preferences, models and the starter model (the store commands run in the worker)."""

from __future__ import annotations

import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from app.accounts.users import create_user, list_users, rotate_token, set_disabled
from app.annotation.prompts import import_prompts, parse_prompt_file
from app.annotation.task import current_task, get_revision, list_revisions, restore_task, save_task
from app.dataset.export import FORMATS, export_lines, write_parquet
from app.platform.config import ROOT
from app.platform.exceptions import BadInput, CommandFailed, RegistryError
from app.tables import ROLES
from app.versions.registry import (
    activate_version,
    active_version_id,
    challenger_version_id,
    list_versions,
    promote_challenger,
    retire_challenger,
    rollback,
    version_role,
)

users = AppGroup("users", help="Manage users.")
prompts_cli = AppGroup("prompts", help="Manage the prompt pool.")
preferences_cli = AppGroup("preferences", help="Export preferences.")
models_cli = AppGroup("models", help="List, activate and roll back model versions.")
task_cli = AppGroup("task", help="Show or edit the task: question, guidelines (Markdown), system prompt.")


@users.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="annotator")
@click.option("--password", default=None, help="Generated when omitted.")
def users_create(name: str, role: str, password: str | None) -> None:
    """Create a user and print their password and API bearer token (shown once)."""
    try:
        user, password, token = create_user(name=name, role=role, password=password)
    except BadInput as exc:
        raise CommandFailed(str(exc)) from None
    click.echo(f"created {user.name} ({user.role})")
    click.echo(f"password: {password}")
    click.echo(f"token: {token}")


@users.command("list")
def users_list() -> None:
    """List users: name, role, and whether they are disabled."""
    for user in list_users():
        click.echo(f"{user.name:<24} {user.role:<9} {'disabled' if user.disabled else 'enabled'}")


def set_disabled_or_fail(name: str, *, disabled: bool) -> None:
    """Disable or enable NAME, or exit with a clear error."""
    try:
        user = set_disabled(name=name, disabled=disabled)
    except BadInput as exc:
        raise CommandFailed(str(exc)) from None
    click.echo(f"{user.name} is {'disabled' if disabled else 'enabled'}")


@users.command("disable")
@click.argument("name")
def users_disable(name: str) -> None:
    """Disable NAME: their sessions, remember cookies and bearer token stop working at once."""
    set_disabled_or_fail(name, disabled=True)


@users.command("enable")
@click.argument("name")
def users_enable(name: str) -> None:
    """Enable NAME again (they log in anew; sessions from before the disable stay ended)."""
    set_disabled_or_fail(name, disabled=False)


@users.command("rotate-token")
@click.argument("name")
def users_rotate_token(name: str) -> None:
    """Give NAME a new API bearer token and print it (shown once); the old one stops working."""
    try:
        token = rotate_token(name=name)
    except BadInput as exc:
        raise CommandFailed(str(exc)) from None
    click.echo(f"token: {token}")


@prompts_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def prompts_import(file: str) -> None:
    """Import prompts from a CSV or JSONL file."""
    from pathlib import Path


    try:
        texts = parse_prompt_file(data=Path(file).read_bytes(), filename=file)
        result = import_prompts(texts=texts, source=f"file:{Path(file).name}",
                                max_chars=current_app.config["MAX_INPUT_CHARS"])
    except BadInput as exc:
        raise CommandFailed(f"nothing imported: {exc}") from None
    click.echo(f"imported {result['imported']} prompts ({result['duplicates']} duplicates skipped)")


@prompts_cli.command("sample")
@click.option("--n", default=200, show_default=True)
@click.option("--seed", default=1, show_default=True)
def prompts_sample(n: int, seed: int) -> None:
    """Fill the pool with blunt messages from the starter task's generator (python -m worker sample-prompts)."""
    run_worker_command("sample-prompts", "--n", str(n), "--seed", str(seed))


@preferences_cli.command("export")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="trl", show_default=True,
              help="trl: {prompt, chosen, rejected} pairs; trl-chat: the same as message lists; kto: "
                   "{prompt, completion, label} per candidate; parquet: the trl rows as one Parquet file")
def preferences_export(file: str, fmt: str) -> None:
    """Write the clicks with their metadata ('-' for stdout)."""
    if fmt == "parquet":
        n = write_parquet(sys.stdout.buffer if file == "-" else file)
        click.echo(f"exported {n} pairs", err=True)
        return

    def write(out) -> int:
        n = 0
        for line in export_lines(fmt=fmt):
            out.write(line)
            n += 1
        return n

    if file == "-":
        n = write(sys.stdout)
    else:
        with open(file, "w", encoding="utf-8") as out:
            n = write(out)
    click.echo(f"exported {n} {'rows' if fmt == 'kto' else 'pairs'}", err=True)


@task_cli.command("show")
@click.option("--revision", type=int, default=None, help="An earlier revision (default: the one in force).")
def task_show(revision: int | None) -> None:
    """Print the task in force (or REVISION): its question, system prompt and guidelines."""
    try:
        task = get_revision(revision) if revision else current_task()
    except BadInput as exc:
        raise CommandFailed(str(exc)) from None
    click.echo(f"revision {task.id} by {task.author} at {task.created_at.isoformat(timespec='seconds')}"
               + (f" (restores {task.restored_from})" if task.restored_from else ""))
    click.echo(f"question: {task.question}")
    click.echo(f"system prompt: {task.system_prompt or '(none)'}")
    click.echo("guidelines:")
    click.echo(task.guidelines)


@task_cli.command("set")
@click.option("--question", default=None, help="Shown above the candidates (default: keep the current one).")
@click.option("--guidelines-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A Markdown file (default: keep the current guidelines).")
@click.option("--system-prompt", default=None, help="A chat model's system prompt ('' for none; default: keep).")
@click.option("--author", default="cli", show_default=True)
def task_set(question: str | None, guidelines_file: str | None, system_prompt: str | None, author: str) -> None:
    """Save a new revision of the task; what is not given is kept from the revision in force."""
    from pathlib import Path

    from app.platform.validation import upload_text

    current = current_task()
    try:
        guidelines = (upload_text(Path(guidelines_file).read_bytes(), filename=guidelines_file)
                      if guidelines_file else current.guidelines)
        task = save_task(question=current.question if question is None else question, guidelines=guidelines,
                         system_prompt=current.system_prompt if system_prompt is None else system_prompt,
                         author=author)
    except BadInput as exc:
        raise CommandFailed(f"task not saved: {exc}") from None
    click.echo(f"task revision {task.id} is in force" + (" (unchanged)" if task.id == current.id else ""))


@task_cli.command("history")
def task_history() -> None:
    """List the revisions, newest first."""
    for task in list_revisions(limit=1000):
        click.echo(f"{task.id:>4}  {task.created_at.isoformat(timespec='seconds')}  {task.author:<16} {task.question}")


@task_cli.command("restore")
@click.argument("revision", type=int)
@click.option("--author", default="cli", show_default=True)
def task_restore(revision: int, author: str) -> None:
    """Make REVISION's text the task again, as a new revision."""
    try:
        task = restore_task(revision=revision, author=author)
    except BadInput as exc:
        raise CommandFailed(str(exc)) from None
    click.echo(f"revision {revision} restored as revision {task.id}")


@models_cli.command("list")
def models_list() -> None:
    """List versions, marking the active one and naming the roles (champion, challenger)."""
    active, challenger = active_version_id(), challenger_version_id()
    for v in list_versions():
        mark = "*" if v.id == active else " "
        role = version_role(v.id, active_id=active, challenger_id=challenger) or "-"
        click.echo(f"{mark} {v.id:>4}  parent={v.parent_id or '-':<4} {v.status:<9} {role:<10} {v.arch:<8} {v.path}")


@models_cli.command("promote")
@click.argument("version_id", type=int)
@click.option("--reason", required=True)
@click.option("--actor", default="cli")
def models_promote(version_id: int, reason: str, actor: str) -> None:
    """Serve the challenger VERSION_ID: it becomes the champion."""
    try:
        promote_challenger(version_id=version_id, actor=actor, reason=reason)
    except BadInput as exc:
        raise CommandFailed(str(exc)) from None
    click.echo(f"challenger {version_id} promoted: it is the champion and serves")


@models_cli.command("retire")
@click.argument("version_id", type=int)
@click.option("--reason", required=True)
@click.option("--actor", default="cli")
def models_retire(version_id: int, reason: str, actor: str) -> None:
    """Drop the challenger VERSION_ID (the champion keeps serving)."""
    try:
        retire_challenger(version_id=version_id, actor=actor, reason=reason)
    except BadInput as exc:
        raise CommandFailed(str(exc)) from None
    click.echo(f"challenger {version_id} retired")


@models_cli.command("activate")
@click.argument("version_id", type=int)
@click.option("--reason", required=True)
@click.option("--actor", default="cli")
def models_activate(version_id: int, reason: str, actor: str) -> None:
    """Serve VERSION_ID from now on."""
    try:
        activate_version(version_id=version_id, actor=actor, reason=reason)
    except RegistryError as exc:
        raise CommandFailed(str(exc)) from None
    click.echo(f"version {version_id} is active")


@models_cli.command("rollback")
@click.option("--reason", required=True)
@click.option("--actor", default="cli")
def models_rollback(reason: str, actor: str) -> None:
    """Serve the active version's parent (or the previously active version)."""
    try:
        event = rollback(actor=actor, reason=reason)
    except RegistryError as exc:
        raise CommandFailed(str(exc)) from None
    click.echo(f"rolled back from {event.from_version_id} to {event.to_version_id}")


@click.command("starter-model", context_settings={"ignore_unknown_options": True})
@with_appcontext
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def starter_model(args: tuple[str, ...]) -> None:
    """Build and register the starter model: python -m worker starter-model [--arch gpt2|t5] [--size] [--seed]."""
    run_worker_command("starter-model", *args)


@models_cli.command("bootstrap")
def models_bootstrap() -> None:
    """Register BASE_MODEL, or build the starter, unless a version already exists (python -m worker bootstrap)."""
    run_worker_command("bootstrap")


@models_cli.command("import")
@click.argument("source")
@click.option("--prompt-format", type=click.Choice(["auto", "chat", "template"]), default="auto", show_default=True,
              help="chat: the tokenizer's chat template with the task's system prompt; template: the manifest's "
                   "{input} template; auto: chat where the tokenizer has a chat template")
def models_import(source: str, prompt_format: str) -> None:
    """Copy a local checkpoint folder or hub id into the store as a new version (python -m worker import-model)."""
    run_worker_command("import-model", source, "--prompt-format", prompt_format)


def run_worker_command(*args: str) -> None:
    """Run a store command in the worker, against this app's database and store; exit with its status.

    The web package never imports the worker (which brings torch and the training code), so commands that write the
    model store run there, in a child process that inherits the terminal.
    """
    import os
    import subprocess


    cfg = current_app.config
    env = {**os.environ, "DATABASE_URL": cfg["SQLALCHEMY_DATABASE_URI"], "MODEL_STORE": str(cfg["MODEL_STORE"]),
           "MODEL_CACHE": str(cfg["MODEL_CACHE"]),
           "BASE_MODEL": cfg["BASE_MODEL"] or "", "TORCH_THREADS": str(cfg["TORCH_THREADS"]),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    # Lines are passed through as they come, so a long starter build shows its progress (and CliRunner sees them).
    with subprocess.Popen([sys.executable, "-m", "worker", *args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            click.echo(line, nl=False)
    if proc.returncode:
        sys.exit(proc.returncode)


def init_app(app: Flask) -> None:
    """Attach the commands."""
    for group in (users, prompts_cli, preferences_cli, models_cli, task_cli, starter_model):
        app.cli.add_command(group)
