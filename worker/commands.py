"""Worker commands that build or import checkpoints: the web never writes the model store, so it calls these.

    python -m worker starter-model --arch gpt2|t5 [--size tiny|default] [--seed 0] [--if-missing] [--rebuild]
        [--write-prebuilt]
    python -m worker import-model PATH_OR_HUB_ID [--prompt-format auto|chat|template]
    python -m worker bootstrap            # BASE_MODEL, or the starter, unless a version exists
    python -m worker sample-prompts --n 200
"""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from app.lm.checkpoint import read_manifest
from app.platform.exceptions import CommandFailed
from app.versions.store import local_copy


@click.command("starter-model")
@click.option("--arch", type=click.Choice(["gpt2", "t5"]), default="gpt2", show_default=True)
@click.option("--size", type=click.Choice(["default", "tiny"]), default="default", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--if-missing", is_flag=True, help="Do nothing if any version is registered.")
@click.option("--rebuild", is_flag=True, help="Train it even where the committed starter (models/prebuilt) matches.")
@click.option("--write-prebuilt", is_flag=True, help="Also copy the result into models/prebuilt (maintainers).")
def starter_model(arch: str, size: str, seed: int, if_missing: bool, rebuild: bool = False,
                  write_prebuilt: bool = False) -> None:
    """Build the starter model (or publish the committed one), register it, and activate it if nothing is active."""
    from flask import current_app

    from app.versions.registry import activate_version, active_version_id, list_versions, register_version
    from worker.starter import StarterConfig, build_starter
    from worker.starter import write_prebuilt as copy_to_prebuilt

    # Asked before training, not after: on a database without its tables a 26-minute build used to end in an error.
    try:
        registered = list_versions()
    except SQLAlchemyError as exc:
        raise CommandFailed(f"the database is not ready ({type(exc).__name__}); run `flask db upgrade` first") from None
    if if_missing and registered:
        click.echo("a model version is already registered; skipping the starter build")
        return
    cfg = StarterConfig.tiny(arch, seed) if size == "tiny" else StarterConfig(arch=arch, seed=seed)
    number, path = build_starter(cfg, store=current_app.config["MODEL_STORE"], log=click.echo, rebuild=rebuild)
    if write_prebuilt:
        click.echo(f"wrote {copy_to_prebuilt(local_copy(path), arch)}")
    register_version(number=number, path=path, manifest=read_manifest(local_copy(path)))
    click.echo(f"registered starter {arch} as version {number} at {path}")
    if active_version_id() is None:
        activate_version(version_id=number, actor="cli", reason="starter model")
        click.echo(f"version {number} is active")


FORMAT_HELP = ("how inputs become prompts: chat (the tokenizer's chat template, after the task's system prompt), "
               "template (the manifest's {input} template), or auto (chat where the tokenizer has a template)")


@click.command("import-model")
@click.argument("source")
@click.option("--prompt-format", type=click.Choice(["auto", "chat", "template"]), default="auto", show_default=True,
              help=FORMAT_HELP)
def import_model_command(source: str, prompt_format: str = "auto") -> None:
    """Copy a local checkpoint folder or hub id into the store as a new version (not activated)."""
    number = register_import(source, prompt_format=prompt_format)
    click.echo(f"registered {source} as version {number}; activate it with `flask models activate {number}`")


@click.command("bootstrap")
@click.pass_context
def bootstrap(ctx: click.Context) -> None:
    """Register BASE_MODEL, or build the starter, unless a version already exists (idempotent)."""
    from flask import current_app

    from app.versions.registry import activate_version, active_version_id, list_versions

    if list_versions():
        click.echo("a model version is already registered")
        return
    base = current_app.config["BASE_MODEL"]
    if not base:
        ctx.invoke(starter_model)
        return
    number = register_import(base)
    if active_version_id() is None:
        activate_version(version_id=number, actor="cli", reason=f"base model {base}")
    click.echo(f"registered {base} as version {number}")


@click.command("sample-prompts")
@click.option("--n", default=200, show_default=True)
@click.option("--seed", default=1, show_default=True)
def sample_prompts(n: int, seed: int) -> None:
    """Fill the pool with blunt messages from the starter task's generator."""
    from flask import current_app

    from app.annotation.prompts import import_prompts
    from worker.corpus import make_prompts

    result = import_prompts(texts=make_prompts(n=n, seed=seed), source="starter-task",
                            max_chars=current_app.config["MAX_INPUT_CHARS"])
    click.echo(f"imported {result['imported']} prompts")


def register_import(source: str, *, prompt_format: str = "auto") -> int:
    """Import SOURCE into the model store and register it; a clear error if it cannot be loaded."""
    from flask import current_app

    from app.versions.registry import register_version
    from worker.checkpoints import import_model

    try:
        number, path = import_model(source=source, store=current_app.config["MODEL_STORE"],
                                    prompt_format=prompt_format)
    except (OSError, ValueError) as exc:
        raise CommandFailed(f"could not load {source}: {exc}") from None
    register_version(number=number, path=path, manifest=read_manifest(local_copy(path)))
    return number


COMMANDS = (starter_model, import_model_command, bootstrap, sample_prompts)
