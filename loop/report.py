"""Terminal tables: the per-round summary and `gaploop status`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rich.table import Table

from loop.console import console

TOP_REASONS = 8  # drop reasons shown per round (the rest summed on one line)


@dataclass
class Round:
    """What one round did, for the summary table and the stopping rules."""

    index: int
    metrics: dict[str, float] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)  # dropped items by reason (core.records.drop_reason_key)


def print_round_table(rd: Round, first: Round) -> None:
    """Test accuracy overall and per skill (with the change since round 0), synthesis counts, IFD, times."""
    m, m0 = rd.metrics, first.metrics
    table = Table(title=f"round {rd.index}", show_header=True, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("since round 0", justify="right")

    def row(label: str, key: str) -> None:
        if key in m:
            delta = m[key] - m0.get(key, m[key]) if rd.index else 0.0
            table.add_row(label, f"{m[key]:.3f}", f"{delta:+.3f}" if rd.index else "")

    row("test accuracy", "test/accuracy")
    row("probe accuracy", "probe/accuracy")
    for key in sorted(k for k in m if k.startswith("test/accuracy/")):
        row(f"  {key.split('/')[-1]}", key)
    if rd.index:
        drops = ", ".join(f"{k.split('/')[-1]} {int(v)}" for k, v in m.items() if k.startswith("synth/dropped/"))
        table.add_row(
            "synthesised / kept / dropped",
            f"{int(m.get('synth/candidates', 0))} / {int(m.get('synth/kept', 0))} / {int(m.get('synth/dropped', 0))}",
            drops,
        )
        for key in sorted(k for k in m if k.startswith("synth/mix/") and k.endswith("/candidates")):
            label, n = key.split("/")[2], int(m[key])
            kept = int(m.get(f"synth/mix/{label}/kept", 0))
            table.add_row(f"  {label}", f"{n} / {kept} / {n - kept}", "mix part")
        ranked = sorted(rd.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        for reason, count in ranked[:TOP_REASONS]:
            table.add_row("", str(count), reason)
        if len(ranked) > TOP_REASONS:
            table.add_row(
                "", str(sum(c for _, c in ranked[TOP_REASONS:])), f"{len(ranked) - TOP_REASONS} other reasons"
            )
        if "ifd/mean" in m:
            table.add_row("IFD mean / median", f"{m['ifd/mean']:.3f} / {m['ifd/median']:.3f}", "")
        if "llm/tokens" in m:
            table.add_row("LLM tokens / cost", f"{int(m['llm/tokens'])} / ${m['llm/cost']:.4f}", "")
            for agent in sorted({k.split("/")[1] for k in m if k.startswith("llm/") and k.endswith("/calls")}):
                table.add_row(f"  {agent}", *agent_cells(m, agent))
    table.add_row("pool size", str(int(m.get("pool/size", 0))), "")
    times = " ".join(f"{k} {v:.1f}s" for k, v in rd.times.items() if k not in ("round", "log"))
    table.add_row("phase times", f"{m.get('time/round', 0.0):.1f}s", times)
    table.add_row("orchestration share", f"{m.get('time/orchestration_share', 0.0):.1%}", "")
    console.print(table)


def agent_cells(m: dict[str, float], agent: str) -> tuple[str, str]:
    """(calls, details) of one LLM agent in a round: cached calls, re-asks, server retries where there were any,
    completion tokens, tokens/s."""
    get = lambda key: m.get(f"llm/{agent}/{key}", 0.0)  # noqa: E731
    rate = m.get(f"llm/{agent}/tokens_per_s")
    details = [
        f"{int(get('cached_calls'))} cached",
        f"{int(get('retries'))} re-asks",
        *([f"{int(get('server_retries'))} server retries"] if get("server_retries") else []),
        f"{int(get('completion_tokens'))} tokens out",
        *([f"{rate:.0f} tok/s"] if rate is not None else []),
    ]
    return f"{int(get('calls'))} calls", ", ".join(details)


def status_table(run_dir: Path) -> Table:
    """One row per finished round of a run directory, from its round summaries and manifest."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    table = Table(title=f"{run_dir}  ({manifest.get('status', 'running')})", title_justify="left")
    for col in ("round", "test acc", "probe acc", "synth kept / cand.", "pool", "round time", "phases done"):
        table.add_column(col, justify="right")
    for summary in sorted(run_dir.glob("round_*/summary.json")):
        s = json.loads(summary.read_text())
        m, r = s["metrics"], s["round"]
        phases = [k for k, v in manifest["phases"].items() if k.startswith(f"round_{r:03d}/") and v["status"] == "done"]
        table.add_row(
            str(r),
            f"{m.get('test/accuracy', 0):.3f}",
            f"{m.get('probe/accuracy', 0):.3f}",
            f"{int(m.get('synth/kept', 0))} / {int(m.get('synth/candidates', 0))}",
            str(int(m.get("pool/size", 0))),
            f"{m.get('time/round', 0):.1f}s",
            str(len(phases)),
        )
    running = [k for k, v in manifest["phases"].items() if v["status"] == "running"]
    if running:
        table.caption = f"running, or interrupted, in: {', '.join(running)} (gaploop resume {run_dir})"
    elif manifest.get("stop_reason"):
        table.caption = f"stopped: {manifest['stop_reason']}"
    return table


def run_state(run_dir: Path) -> str:
    """finished (and why it stopped early, if it did), running (in which phase), or stopped in a phase."""
    from loop.store import _alive

    manifest = json.loads((run_dir / "manifest.json").read_text())
    phases = manifest.get("phases", {})
    unfinished = [k for k, v in phases.items() if v.get("status") != "done"]
    if manifest.get("status") == "finished":
        why = manifest.get("stop_reason")
        return f"finished ({why})" if why else "finished"
    lock = run_dir / ".lock"
    holder = lock.read_text().strip() if lock.exists() else ""
    if unfinished:
        r, _, phase = unfinished[-1].partition("/")
        where = f"round {int(r.split('_')[1])} {phase}"
    else:
        where = "between phases" if phases else "before round 0"
    if holder.isdigit() and _alive(int(holder)):
        return f"running: {where}"
    return f"stopped: {where}"


def runs_table(root: Path) -> Table:
    """One row per run directory under `root`: state, rounds, best and last test accuracy, strategy, when made."""
    import datetime

    table = Table(title=f"runs in {root}", title_justify="left")
    for col in ("run", "state", "rounds", "best test acc", "last test acc", "plan x writer", "created"):
        table.add_column(col, justify="right" if "acc" in col or col == "rounds" else "left")
    found = sorted((p.parent for p in root.glob("*/manifest.json")), key=lambda d: d.stat().st_mtime)
    for run_dir in found:
        try:
            manifest = json.loads((run_dir / "manifest.json").read_text())
            cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").exists() else {}
        except (OSError, ValueError) as err:
            table.add_row(run_dir.name, f"unreadable: {err}", "", "", "", "", "")
            continue
        accs = []
        for summary in sorted(run_dir.glob("round_*/summary.json")):
            accs.append(float(json.loads(summary.read_text())["metrics"].get("test/accuracy", 0.0)))
        syn = (cfg or {}).get("synthesis", {})
        name = lambda spec: spec.get("name") if isinstance(spec, dict) else spec  # noqa: E731
        strategy = f"{name(syn.get('plan'))} x {name(syn.get('writer'))}" + (" (mix)" if syn.get("mix") else "")
        created = manifest.get("created")
        when = datetime.datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M") if created else ""
        table.add_row(
            run_dir.name,
            run_state(run_dir),
            str(len(accs)),
            f"{max(accs):.3f}" if accs else "-",
            f"{accs[-1]:.3f}" if accs else "-",
            strategy,
            when,
        )
    return table
