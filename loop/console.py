"""Terminal output: one console, progress bars for long phases, tables."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


def progress_bar() -> Progress:
    """A progress bar for one long phase (training steps, items answered, rows scored)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


class CallProgress:
    """A bar for each batch of model calls (`LLMClient.progress`): opened at the first report of a batch, closed
    when it reports every call done (also on a failure), with calls/s beside it."""

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._started = 0.0

    def __call__(self, label: str, done: int, total: int) -> None:
        if self._bar is None:
            if done >= total:  # a batch that went in one piece: nothing to follow
                return
            self._bar, self._started = progress_bar(), time.perf_counter()
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, info="")
        rate = done / max(time.perf_counter() - self._started, 1e-9)
        self._bar.update(self._task, completed=done, info=f"{rate:.2f} calls/s")  # type: ignore[arg-type]
        if done >= total:
            self._bar.stop()
            self._bar = None
