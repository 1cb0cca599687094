"""The `gaploop` command line: a thin face over loop/, trainers/ and agents/."""

from __future__ import annotations

import errno
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from core.children import watch_holder
from loop.config import ConfigError, dump_config, load_config

# vLLM spawns the processes of a teacher engine held here, which import this module again: they stop once this
# process is gone (core/children.py). Nothing happens in any other process.
watch_holder()

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


def _warn(message: Warning | str, category: type[Warning], filename: str, lineno: int, *args: object) -> None:
    """Deprecation notices as one line each, not with the source line that raised them."""
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


warnings.showwarning = _warn  # type: ignore[assignment]


@contextmanager
def _stoppable() -> Iterator[None]:
    """SIGTERM and SIGHUP stop a command as Ctrl-C does, children first (core.children); exit 128 + signal."""
    from core.children import Stopped, stop_on_signals

    with stop_on_signals():
        try:
            yield
        except KeyboardInterrupt as err:
            raise typer.Exit(128 + (err.signum if isinstance(err, Stopped) else signal.SIGINT)) from None


@contextmanager
def _reported() -> Iterator[None]:
    """A run that fails ends in a message with every secret masked (core.secrets), exit status 1: the failures of
    things outside the code (a chat server, a trainer or inference child, a data file, a model) as their message
    alone, anything else as its traceback."""
    from agents.llm.backends import LLMCallError
    from agents.tasks.datasets import DataError
    from core.jsonl import DataFileError
    from core.models import ModelConversionError, ModelFolderError, ModelNotFoundError
    from core.secrets import redact
    from loop.store import ManifestError
    from trainers.sft import SFTError

    try:
        yield
    except (
        LLMCallError,
        SFTError,
        DataFileError,
        DataError,
        ModelNotFoundError,
        ModelFolderError,
        ModelConversionError,
    ) as err:
        kind = "LLMCallError" if isinstance(err, LLMCallError) else type(err).__name__  # PartialBatch is one
        typer.secho(redact(f"{kind}: {err}"), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except (typer.Exit, KeyboardInterrupt, FileExistsError, ConfigError, ManifestError):
        raise  # said by the command itself
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            sys.stderr.write(redact(traceback.format_exc()))
            raise typer.Exit(1) from None
        where = f" writing {err.filename}" if err.filename else ""
        typer.secho(f"no space left on the device{where} ({err.strerror}); free space, then resume", fg="red", err=True)
        raise typer.Exit(1) from None
    except Exception:
        sys.stderr.write(redact(traceback.format_exc()))
        raise typer.Exit(1) from None


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
        with _stoppable(), _reported():
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
        with _stoppable(), _reported():
            resume_run(run_dir)
    except (ManifestError, ConfigError) as err:
        typer.secho(str(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="a run directory")],
    watch: Annotated[bool, typer.Option("--watch", help="follow a live run until it finishes or stops")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.2, help="seconds between refreshes")] = 5.0,
) -> None:
    """Per-round table of a run directory (works while the run is going and after a crash)."""
    import time

    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    from loop.report import run_state, status_table
    from loop.store import ManifestError, RunStore

    try:
        _ = RunStore(run_dir).manifest
    except ManifestError as err:
        typer.secho(str(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    if not watch:
        Console().print(status_table(run_dir))
        Console().print(f"report: {_refresh_report(run_dir)}", soft_wrap=True)
        return

    def view() -> Group:
        return Group(status_table(run_dir), Text(f"state: {run_state(run_dir)}"))

    seen = -1
    try:
        with Live(view(), refresh_per_second=4, transient=False) as live:
            while run_state(run_dir).startswith("running"):
                time.sleep(interval)
                live.update(view())
                rounds = len(list(run_dir.glob("round_*/summary.json")))
                if rounds != seen:  # the report follows the run round by round, not every refresh
                    seen = rounds
                    _refresh_report(run_dir)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    Console().print(f"report: {_refresh_report(run_dir)}", soft_wrap=True)


def _refresh_report(run_dir: Path) -> str:
    """The run's report.html made anew (what `status` shows, as a page), or why not yet."""
    from loop.run_report import write_run_report

    return write_run_report(run_dir)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (finished, running or stopped)")],
    fixed_at: Annotated[
        float, typer.Option("--fixed-at", min=0.0, max=1.0, help="a point counts as fixed at this test accuracy")
    ] = 0.8,
) -> None:
    """Write RUN_DIR/report.html (self-contained: plots embedded), report/report.json and report/*.png:
    accuracy by round and skill, a point x round heatmap, items kept and dropped by reason, IFD, teacher
    usage, phase times, training loss, and the weakest points with their failures and the items written for them."""
    from loop.run_report import ReportError, write_report

    try:
        page = write_report(run_dir, fixed_at)
    except ReportError as err:
        typer.secho(str(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {page} (plots and data in {run_dir / 'report'})")


@app.command()
def runs(root: Annotated[Path, typer.Argument(help="a folder of run directories")] = Path("runs")) -> None:
    """The runs under a folder: running, finished or stopped in which phase, rounds, accuracy, strategy."""
    from rich.console import Console

    from loop.report import runs_table

    if not root.is_dir():
        typer.secho(f"{root}: no such folder (runs go to runs/ unless run_dir= says otherwise)", fg="red", err=True)
        raise typer.Exit(2)
    Console().print(runs_table(root))


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run directory")],
    out: Annotated[Path, typer.Option("--out", help="the folder to write (must not exist, or be empty)")],
    format: Annotated[str, typer.Option("--format", help="hf (save_to_disk), parquet or jsonl")] = "hf",
    kept_only: Annotated[bool, typer.Option("--kept-only", help="only the synthetic items that were kept")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace what --out holds")] = False,
    push_to_hub: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--push-to-hub",
            metavar="REPO",
            help="then upload --out to this Hugging Face dataset repo (needs a token: HF_TOKEN or `hf auth login`; "
            "--format parquet or jsonl)",
        ),
    ] = None,
    private: Annotated[bool, typer.Option("--private", help="with --push-to-hub: make a new repo private")] = False,
) -> None:
    """The run's data as a dataset: the seed and every synthetic item with its provenance, and a dataset card."""
    from core.secrets import redact
    from loop.export import ExportError, PushError, hub_token, push
    from loop.export import export as export_run
    from loop.store import ManifestError

    try:
        if private and push_to_hub is None:
            raise ExportError("--private applies to --push-to-hub REPO, which is not given")
        token = hub_token(push_to_hub, format) if push_to_hub is not None else None  # before any work
        counts = export_run(run_dir, out, format, kept_only, overwrite)  # type: ignore[arg-type]
        sizes = ", ".join(f"{name} {n}" for name, n in counts.items())
        typer.echo(f"wrote {out} ({format}: {sizes}; card {out / 'README.md'})")
        if push_to_hub is not None and token is not None:
            typer.echo(f"pushed to {push(out, push_to_hub, token, private)}")
    except (ExportError, ManifestError) as err:
        typer.secho(redact(str(err)), fg=typer.colors.RED, err=True)
        raise typer.Exit(1 if isinstance(err, PushError) else 2) from None  # 1: the hub failed, not the input


@app.command()
def compare(
    paths: Annotated[list[Path], typer.Argument(help="run directories, or folders whose subfolders are runs")],
    by: Annotated[
        str, typer.Option("--by", help="group by strategy (plan x writer, refiners, mix; settings that differ) or seed")
    ] = "strategy",
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--out", help="also write compare.html (self-contained), compare.json and the PNG plots here"),
    ] = None,
    baseline: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--baseline", help="a group's label: every group's final accuracy also as a difference from it"),
    ] = None,
    weak_below: Annotated[
        float,
        typer.Option("--weak-below", min=0.0, max=1.0, help="a point is weak in a run below this round-0 accuracy"),
    ] = 0.5,
) -> None:
    """Runs side by side: round-0, per-round and final test accuracy (mean ± std over a group's runs), the weak
    points, each knowledge point's final accuracy, and items written / kept and teacher tokens. Only finished
    rounds count."""
    from loop.compare import CompareError, load, print_comparison, write_page

    try:
        result = load(paths, by, weak_below, baseline)
    except CompareError as err:
        typer.secho(str(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    print_comparison(result)
    if out is not None:
        typer.echo(f"wrote {write_page(result, out)} (plots and compare.json in {out})")


@app.command()
def demo(config: ConfigArg = None, overrides: OverridesArg = None) -> None:
    """Round 0 of the loop (build the student, train it with DeepSpeed, evaluate on held-out items), then the
    untrained base's accuracy and the trained student's IFD over the seed; logged to W&B (offline without a key)."""
    cfg = _config(config, overrides)
    _quiet_libraries()
    from loop.demo import run_demo

    with _stoppable():
        run_demo(cfg)


# Its docstring is one paragraph per line: typer's rich help keeps single line breaks after the first paragraph.
@app.command()
def detect(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    model: Annotated[Optional[str], typer.Option(help="an HF model folder to investigate")] = None,  # noqa: UP045
    run: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="a gaploop run directory: investigate its student, with its config unless one is given"),
    ] = None,
    round: Annotated[Optional[int], typer.Option(help="with --run: that round's student (default: the latest)")] = None,  # noqa: UP045
    iterations: Annotated[int, typer.Option(help="search iterations after the first sweep")] = 3,
    per_node: Annotated[int, typer.Option(help="items per knowledge point and iteration")] = 20,
    out: Annotated[Optional[Path], typer.Option(help="report folder (default: runs/detect-<time>)")] = None,  # noqa: UP045
    domain: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="with teacher.kind=llm: the domain the model builds a taxonomy for, e.g. 'unit conversion'"),
    ] = None,
    taxonomy: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="with teacher.kind=llm: a JSON/YAML list of {id, category, description} test points"),
    ] = None,
    points: Annotated[int, typer.Option(help="with --domain: how many test points the model proposes")] = 8,
) -> None:
    """Find a student's capability gaps without training it: AutoDetect's iterative search, then a report.

    Every point is asked --per-node items, then --per-node more in each of --iterations rounds, where it fails.

    Writes report.html (self-contained, with plots), report.json, PNG plots, items.jsonl and a W&B run to --out.

    Default: the task world, graded exactly, searched over difficulty levels and facets.

    The student: --model DIR, --run RUN_DIR, or with neither the embedded tiny student, trained here first (CPU).

    With teacher.kind=llm a chat model writes the tests and reference answers and judges the answers 1-10.
    """
    if run is not None and (config is None or "=" in config) and (run / "config.yaml").is_file():
        # A run's student is investigated with the run's own config (template, task, points), overrides on top.
        overrides = [config, *(overrides or [])] if config else overrides
        config = str(run / "config.yaml")
    cfg = _config(config, overrides)
    _quiet_libraries()
    from loop.detect import DetectError, DetectOptions, run_detect

    opts = DetectOptions(
        model=model,
        run=str(run) if run else None,
        round=round,
        iterations=iterations,
        per_node=per_node,
        out=str(out) if out else None,
        domain=domain,
        taxonomy=str(taxonomy) if taxonomy else None,
        points=points,
    )
    try:
        with _stoppable():
            run_detect(cfg, opts)
    except DetectError as err:
        typer.secho(str(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@app.command()
def plugins(kind: Annotated[Optional[str], typer.Argument(help="one kind: plan, writer, ...")] = None) -> None:  # noqa: UP045
    """The registered plugins by kind: name, what each needs and reads, and its fields with their defaults."""
    from rich.console import Console
    from rich.table import Table

    from core import plugins as registry

    kinds = [kind] if kind else list(registry.KINDS)
    if kind is not None and kind not in registry.KINDS:
        typer.secho(f"unknown kind {kind!r}; kinds: {', '.join(registry.KINDS)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    table = Table(title="gaploop plugins (set a field with e.g. synthesis.plan.park_after=30)", title_justify="left")
    for col in ("kind", "name", "needs", "reads", "fields (default)", "what it is"):
        table.add_column(col)
    for k in kinds:
        for name, cls in sorted(registry.plugins(k).items()):
            fields = ", ".join(f"{f}={v.default!r}" for f, v in cls.Config.model_fields.items() if f != "name")
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            table.add_row(k, name, ", ".join(sorted(cls.needs)) or "-", ", ".join(cls.reads) or "-", fields or "-", doc)
    Console(width=200).print(table)


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
    reverse: Annotated[
        bool, typer.Option(help="also r-IFD = loss(Q | reverse prompt with A) / loss(Q): rifd, rloss_cond, rloss_alone")
    ] = False,
) -> None:
    """Score Instruction-Following Difficulty, IFD = loss(A|Q) / loss(A), for every row of a file."""
    from core.models import ModelConversionError
    from trainers.ifd import score_file

    if not data.is_file():
        typer.secho(f"--data: file not found: {data}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    try:
        stats = score_file(model, data, out, template, max_length, batch_size, device, reverse)
    except (ValueError, FileNotFoundError, ModelConversionError) as err:
        typer.secho(f"gaploop ifd: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"scored {stats['scored']}/{stats['rows']} rows -> {out}  "
        f"({stats['samples_per_s']:.1f} samples/s, {stats['tokens_per_s']:.0f} tokens/s, "
        f"{stats['seconds']:.1f}s, model load excluded)"
    )


# Data hygiene: `gaploop data decontam` and `gaploop data dedup` over JSONL files.

data_app = typer.Typer(no_args_is_help=True, help="Data hygiene on JSONL files: decontamination and dedup.")
app.add_typer(data_app, name="data")

FieldOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="text field of the rows (default: the first of instruction, question, prompt)"),
]


def _report_path(out: Path) -> Path:
    """`clean.jsonl` -> `clean.dropped.jsonl`, beside it."""
    return out.with_name(f"{out.stem if out.suffix == '.jsonl' else out.name}.dropped.jsonl")


def _read(option: str, path: Path, field: str | None) -> tuple[list[dict[str, object]], list[int]]:
    from agents.hygiene import HygieneError, read_rows

    try:
        return read_rows(path, field)
    except HygieneError as err:
        typer.secho(f"{option}: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@data_app.command("decontam")
def data_decontam(
    train: Annotated[Path, typer.Option(help="JSONL rows to clean")],
    against: Annotated[list[Path], typer.Option(help="evaluation JSONL to protect; repeat for several sets")],
    out: Annotated[
        Path, typer.Option(help="JSONL out: the kept rows; the dropped ones go to <out stem>.dropped.jsonl beside it")
    ],
    field: FieldOpt = None,
    against_field: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="text field of the --against rows (default: the first of instruction, question, prompt)"),
    ] = None,
    n: Annotated[int, typer.Option(help="words in a shared run that marks a copy")] = 13,
    near_threshold: Annotated[
        float, typer.Option(help="share of an evaluation row's words in order that marks a near copy; 0 = off")
    ] = 0.9,
) -> None:
    """Drop training rows that contain an evaluation row: a shared n-word run, or a near copy with small edits."""
    from rich.console import Console
    from rich.table import Table

    from agents.hygiene import decontaminate
    from core.jsonl import write_jsonl

    rows, lines = _read("--train", train, field)
    names = [p.stem for p in against]
    names = [str(p) if names.count(name) > 1 else name for p, name in zip(against, names, strict=True)]
    sets = {name: _read("--against", path, against_field) for name, path in zip(names, against, strict=True)}
    kept, dropped = decontaminate(
        rows,
        {name: s[0] for name, s in sets.items()},
        n=n,
        field=field,
        against_field=against_field,
        near_threshold=near_threshold or None,
    )
    files = dict(zip(names, against, strict=True))
    report = [
        {
            "line": lines[d["row_index"]],
            "reason": d["drop_reason"],
            "match": d["match"],
            "detail": d["drop_detail"],
            "similarity": d["similarity"],
            "matched": {
                "set": d["matched_set"],
                "file": str(files[d["matched_set"]]),
                "line": sets[d["matched_set"]][1][d["matched_index"]],
                "id": d["matched_id"],
                "text": d["matched_text"],
            },
            "row": rows[d["row_index"]],
        }
        for d in dropped
    ]
    write_jsonl(out, kept)
    write_jsonl(_report_path(out), report)

    table = Table(title=f"{train}: {len(rows)} rows, dropped by the evaluation row they contain")
    for column in ("evaluation set", "rows", "dropped", f"{n}-gram", "whole text", "near copy"):
        table.add_column(column, justify="left" if column == "evaluation set" else "right")
    for name, (set_rows, _) in sets.items():
        kinds = [d["match"] for d in dropped if d["matched_set"] == name]
        counts = (len(kinds), kinds.count(f"{n}-gram"), kinds.count("whole text"), kinds.count("near-copy"))
        table.add_row(name, str(len(set_rows)), *map(str, counts))
    Console().print(table)
    typer.echo(f"kept {len(kept)} of {len(rows)} rows -> {out}; dropped {len(dropped)} -> {_report_path(out)}")


@data_app.command("dedup")
def data_dedup(
    in_: Annotated[Path, typer.Option("--in", help="JSONL rows to deduplicate")],
    out: Annotated[
        Path, typer.Option(help="JSONL out: the kept rows; the dropped ones go to <out stem>.dropped.jsonl beside it")
    ],
    method: Annotated[
        str, typer.Option(help="exact (normalised text), rouge (ROUGE-L, small pools) or minhash (large pools)")
    ] = "minhash",
    threshold: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="rouge: drop above this ROUGE-L (default 0.7); minhash: drop at this Jaccard (0.8)"),
    ] = None,
    field: FieldOpt = None,
) -> None:
    """Drop rows that repeat an earlier row, exactly or nearly; the first of each group is kept."""
    import time

    from agents.hygiene import exact_dedup, minhash_dedup, rouge_dedup
    from core.jsonl import write_jsonl

    methods = {"exact": None, "rouge": 0.7, "minhash": 0.8}
    if method not in methods:
        typer.secho(f"--method: expected one of {', '.join(methods)}, got {method!r}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if threshold is not None and (method == "exact" or not 0.0 <= threshold <= 1.0):
        why = "does not apply to --method exact" if method == "exact" else "must be between 0 and 1"
        typer.secho(f"--threshold: {why}, got {threshold}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    rows, lines = _read("--in", in_, field)
    t0 = time.perf_counter()
    if method == "exact":
        kept, dropped = exact_dedup(rows, field)
    elif method == "rouge":
        kept, dropped = rouge_dedup(rows, threshold if threshold is not None else methods["rouge"], field)
    else:
        kept, dropped = minhash_dedup(rows, threshold if threshold is not None else methods["minhash"], field=field)
    seconds = time.perf_counter() - t0
    report = [
        {
            "line": lines[d["row_index"]],
            "reason": d["drop_reason"],
            "match": d["match"],
            "detail": d["drop_detail"],
            "similarity": d["similarity"],
            "matched": {"line": lines[d["matched_index"]], "id": d["matched_id"], "text": d["matched_text"]},
            "row": rows[d["row_index"]],
        }
        for d in dropped
    ]
    write_jsonl(out, kept)
    write_jsonl(_report_path(out), report)
    typer.echo(
        f"{method}: kept {len(kept)} of {len(rows)} rows -> {out}; dropped {len(dropped)} -> {_report_path(out)} "
        f"({seconds:.1f}s)"
    )


if __name__ == "__main__":
    app()
