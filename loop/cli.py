"""The `gaploop` command line: a thin face over loop/, trainers/ and agents/."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from loop.config import ConfigError, dump_config, load_config

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="gaploop: find where a student model fails, synthesise targeted data, keep what is hard "
    "by IFD, retrain with DeepSpeed, and log every round.",
)

ConfigArg = Annotated[
    Optional[str],  # noqa: UP045 - typer reads the annotation at run time
    typer.Argument(help="YAML config (default: configs/demo.yaml); a key=value here counts as an override"),
]
OverridesArg = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Argument(help="key=value overrides with dotted paths, e.g. training.lr=1e-3 task.seed_per_point=20"),
]


def _quiet_libraries() -> None:
    """Our own progress bars say what is happening; the libraries' per-load bars are noise."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_SILENT", "true")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _config(config: str | None, overrides: list[str] | None):
    items = list(overrides or [])
    if config is not None and "=" in config and not Path(config).exists():
        items.insert(0, config)
        config = None
    try:
        return load_config(config, items)
    except ConfigError as err:
        typer.secho(str(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@app.command()
def run(config: ConfigArg = None, overrides: OverridesArg = None) -> None:
    """Run the feedback loop: round 0 trains on the seed and evaluates; each later round examines,
    questions, answers, assesses, filters (dedup, decontamination, IFD), retrains, evaluates, logs."""
    cfg = _config(config, overrides)
    _quiet_libraries()
    from loop.runner import start_run

    try:
        start_run(cfg)
    except FileExistsError as err:
        typer.secho(str(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@app.command()
def resume(run_dir: Annotated[Path, typer.Argument(help="a run directory made by `gaploop run`")]) -> None:
    """Continue an interrupted run; finished phases are skipped, nothing is lost or duplicated."""
    _quiet_libraries()
    from loop.runner import resume_run
    from loop.store import ManifestError

    try:
        resume_run(run_dir)
    except (ManifestError, ConfigError) as err:
        typer.secho(str(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@app.command()
def status(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """Per-round table of a run directory (works while the run is going and after a crash)."""
    from rich.console import Console

    from loop.report import status_table
    from loop.store import ManifestError, RunStore

    try:
        _ = RunStore(run_dir).manifest
    except ManifestError as err:
        typer.secho(str(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    Console().print(status_table(run_dir))


@app.command()
def demo(config: ConfigArg = None, overrides: OverridesArg = None) -> None:
    """Student-side demo on the embedded default: build a tiny student, train it with DeepSpeed,
    evaluate on held-out items, score IFD, log to W&B (offline without an API key)."""
    cfg = _config(config, overrides)
    _quiet_libraries()
    from loop.demo import run_demo

    run_demo(cfg)


@app.command("config")
def show_config(config: ConfigArg = None, overrides: OverridesArg = None) -> None:
    """Validate a config with its overrides and print it resolved (every field)."""
    typer.echo(dump_config(_config(config, overrides)), nl=False)


@app.command()
def ifd(
    model: Annotated[str, typer.Option(help="HF model folder or hub name (the student)")],
    data: Annotated[Path, typer.Option(help="JSONL rows: instruction, optional input, output")],
    out: Annotated[Path, typer.Option(help="JSONL out: same rows, same order, plus loss_cond, loss_alone, ifd")],
    max_length: Annotated[int, typer.Option(help="token budget of prompt + answer")] = 512,
    template: Annotated[str, typer.Option(help="plain (Superfiltering's), alpaca or chat")] = "plain",
    batch_size: Annotated[int, typer.Option(help="sequences per forward batch")] = 16,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda; default: cuda when available")] = None,  # noqa: UP045
) -> None:
    """Score Instruction-Following Difficulty, IFD = loss(A|Q) / loss(A), for every row of a file."""
    from trainers.ifd import score_file

    if not data.is_file():
        typer.secho(f"--data: file not found: {data}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    try:
        stats = score_file(model, data, out, template, max_length, batch_size, device)
    except (ValueError, FileNotFoundError) as err:
        typer.secho(f"gaploop ifd: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"scored {stats['scored']}/{stats['rows']} rows -> {out}  "
        f"({stats['samples_per_s']:.1f} samples/s, {stats['tokens_per_s']:.0f} tokens/s, "
        f"{stats['seconds']:.1f}s, model load excluded)"
    )


if __name__ == "__main__":
    app()
