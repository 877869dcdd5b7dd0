"""Flask CLI: users, prompts, preferences, models and the starter model."""

from __future__ import annotations

import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from app.validation import BadInput

users = AppGroup("users", help="Manage users.")
prompts_cli = AppGroup("prompts", help="Manage the prompt pool.")
preferences_cli = AppGroup("preferences", help="Export preferences.")
models_cli = AppGroup("models", help="List, activate and roll back model versions.")


def fail(message: str) -> None:
    """Print a clear error and exit non-zero."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@users.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["annotator", "admin", "operator"]), default="annotator")
@click.option("--password", default=None, help="Generated when omitted.")
def users_create(name: str, role: str, password: str | None) -> None:
    """Create a user and print their password and API bearer token (shown once)."""
    from app.users import create_user

    try:
        user, password, token = create_user(name=name, role=role, password=password)
    except BadInput as exc:
        fail(str(exc))
    click.echo(f"created {user.name} ({user.role})")
    click.echo(f"password: {password}")
    click.echo(f"token: {token}")


@prompts_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def prompts_import(file: str) -> None:
    """Import prompts from a CSV or JSONL file."""
    from pathlib import Path

    from app.prompts import import_prompts, parse_prompt_file

    try:
        texts = parse_prompt_file(data=Path(file).read_bytes(), filename=file)
        result = import_prompts(texts=texts, source=f"file:{Path(file).name}",
                                max_chars=current_app.config["MAX_INPUT_CHARS"])
    except BadInput as exc:
        fail(f"nothing imported: {exc}")
    click.echo(f"imported {result['imported']} prompts ({result['duplicates']} duplicates skipped)")


@prompts_cli.command("sample")
@click.option("--n", default=200, show_default=True)
@click.option("--seed", default=1, show_default=True)
def prompts_sample(n: int, seed: int) -> None:
    """Fill the pool with blunt messages from the starter task's generator."""
    from app.prompts import import_prompts
    from worker.corpus import make_prompts

    result = import_prompts(texts=make_prompts(n=n, seed=seed), source="starter-task",
                            max_chars=current_app.config["MAX_INPUT_CHARS"])
    click.echo(f"imported {result['imported']} prompts")


@preferences_cli.command("export")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
def preferences_export(file: str) -> None:
    """Write TRL preference pairs as JSON lines ('-' for stdout)."""
    from app.preferences import export_lines

    def write(out) -> int:
        n = 0
        for line in export_lines():
            out.write(line)
            n += 1
        return n

    if file == "-":
        n = write(sys.stdout)
    else:
        with open(file, "w", encoding="utf-8") as out:
            n = write(out)
    click.echo(f"exported {n} pairs", err=True)


@models_cli.command("list")
def models_list() -> None:
    """List versions, marking the active one."""
    from app.registry import active_version_id, list_versions

    active = active_version_id()
    for v in list_versions():
        mark = "*" if v.id == active else " "
        click.echo(f"{mark} {v.id:>4}  parent={v.parent_id or '-':<4} {v.status:<9} {v.arch:<8} {v.path}")


@models_cli.command("activate")
@click.argument("version_id", type=int)
@click.option("--reason", required=True)
@click.option("--actor", default="cli")
def models_activate(version_id: int, reason: str, actor: str) -> None:
    """Serve VERSION_ID from now on."""
    from app.registry import RegistryError, activate_version

    try:
        activate_version(version_id=version_id, actor=actor, reason=reason)
    except RegistryError as exc:
        fail(str(exc))
    click.echo(f"version {version_id} is active")


@models_cli.command("rollback")
@click.option("--reason", required=True)
@click.option("--actor", default="cli")
def models_rollback(reason: str, actor: str) -> None:
    """Serve the active version's parent (or the previously active version)."""
    from app.registry import RegistryError, rollback

    try:
        event = rollback(actor=actor, reason=reason)
    except RegistryError as exc:
        fail(str(exc))
    click.echo(f"rolled back from {event.from_version_id} to {event.to_version_id}")


@click.command("starter-model")
@with_appcontext
@click.option("--arch", type=click.Choice(["gpt2", "t5"]), default="gpt2", show_default=True)
@click.option("--size", type=click.Choice(["default", "tiny"]), default="default", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--if-missing", is_flag=True, help="Do nothing if any version is registered.")
def starter_model(arch: str, size: str, seed: int, if_missing: bool) -> None:
    """Build the starter model, register it, and activate it if nothing is active."""
    import torch

    from app.registry import activate_version, active_version_id, list_versions, register_version
    from worker.starter import StarterConfig, build_starter

    if if_missing and list_versions():
        click.echo("a model version is already registered; skipping the starter build")
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = StarterConfig.tiny(arch, seed) if size == "tiny" else StarterConfig(arch=arch, seed=seed)
    number, path = build_starter(cfg, store=current_app.config["MODEL_STORE"], log=click.echo)
    from app.generation import read_manifest

    register_version(number=number, path=path, manifest=read_manifest(path))
    click.echo(f"registered starter {arch} as version {number} at {path}")
    if active_version_id() is None:
        activate_version(version_id=number, actor="cli", reason="starter model")
        click.echo(f"version {number} is active")


@models_cli.command("bootstrap")
def models_bootstrap() -> None:
    """Register BASE_MODEL, or build the starter, unless a version already exists (idempotent)."""
    from app.registry import activate_version, active_version_id, list_versions

    if list_versions():
        click.echo("a model version is already registered")
        return
    base = current_app.config["BASE_MODEL"]
    if not base:
        click.get_current_context().invoke(starter_model)
        return
    number = register_import(base)
    if active_version_id() is None:
        activate_version(version_id=number, actor="cli", reason=f"base model {base}")
    click.echo(f"registered {base} as version {number}")


@models_cli.command("import")
@click.argument("source")
def models_import(source: str) -> None:
    """Copy a local checkpoint folder or hub id into the store as a new version (not activated)."""
    number = register_import(source)
    click.echo(f"registered {source} as version {number}; activate it with `flask models activate {number}`")


def register_import(source: str) -> int:
    """Import SOURCE into the model store and register it; a clear error if it cannot be loaded."""
    from app.generation import read_manifest
    from app.registry import register_version
    from worker.checkpoints import import_model

    try:
        number, path = import_model(source=source, store=current_app.config["MODEL_STORE"])
    except (OSError, ValueError) as exc:
        fail(f"could not load {source}: {exc}")
    register_version(number=number, path=path, manifest=read_manifest(path))
    return number


def init_app(app: Flask) -> None:
    """Attach the commands."""
    for group in (users, prompts_cli, preferences_cli, models_cli, starter_model):
        app.cli.add_command(group)
