"""The round state machine: `run` starts a run, `resume` continues one; a round reads top to bottom.

    round 0:  data -> build -> train(seed) -> evaluate(probe, test) -> log
    round r:  examine -> question -> answer -> refine* -> assess -> filter -> train -> evaluate -> log

Each step is a stage function (loop/stages.py) run by the step executor (loop/steps.py), which skips it
when the manifest says it is done with the same inputs, writes its outputs atomically and then marks it
done; a crash or Ctrl-C at any moment loses or duplicates nothing. Which agent does the work inside a
stage is the config's choice of plugins; this file never asks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml

from agents.llm.client import BudgetExceeded, LLMClient
from agents.llm.parsing import Chat
from core.children import Stopped
from core.models import check_model
from loop import files as F
from loop.config import RunConfig, config_from_dict, dump_config
from loop.console import console
from loop.files import RunFiles
from loop.parts import corpus_documents, make_client
from loop.report import Round, print_round_table
from loop.stages import Stages
from loop.steps import HOLD_ENV, Steps
from loop.stopping import stop_reason
from loop.store import RunStore, default_run_dir
from loop.tasks import DatasetTask, Task, make_task
from loop.tracking import Tracker

__all__ = ["HOLD_ENV", "Round", "Runner", "resume_run", "start_run"]


class Runner:
    """Runs the rounds of one run directory; `client` and `task` may be injected (tests, notebooks)."""

    def __init__(self, cfg: RunConfig, store: RunStore, client: Chat | None = None, task: Task | None = None) -> None:
        self.cfg, self.store, self.root = cfg, store, store.root
        self.files = RunFiles(self.root)
        self.task = task or make_task(cfg)
        if isinstance(self.task, DatasetTask) and (self.root / F.TAXONOMY).exists():  # a resumed run
            self.task.described = yaml.safe_load((self.root / F.TAXONOMY).read_text())
        self._client: Chat | None = client
        self.tracker: Tracker | None = None
        chat = cfg.teacher.kind == "llm"
        self.stages = Stages(cfg, self.files, self.task, self.client if chat else None, self._tracker)
        self.steps = Steps(store)
        self.config = cfg.model_dump(mode="json")

    def client(self, r: int) -> LLMClient:
        """The LLM client (made at first use: a local model loads only when a step asks it), counting for round r."""
        if self._client is None:
            self._client = make_client(self.cfg, self.root, self.cfg.teacher.llm.model)
        if hasattr(self._client, "round"):
            self._client.round = r  # type: ignore[union-attr]
        return self._client  # type: ignore[return-value]

    def _tracker(self) -> Tracker:
        assert self.tracker is not None, "the tracker starts with execute()"
        return self.tracker

    # -- the loop ----------------------------------------------------------------------------------
    @contextmanager
    def session(self, tags: Sequence[str] = ()) -> Iterator[Tracker]:
        """The run directory locked and the tracker open (W&B resumed where the run has one), for its rounds."""
        with self.store.lock():
            t = self.cfg.tracking
            run_id = self.store.manifest.get("wandb_run_id")
            self.tracker = Tracker(
                self.root, self.config, mode=t.wandb_mode, project=t.project, entity=t.entity,
                name=self.root.name, tags=[*tags, *t.tags], run_id=run_id,  # type: ignore[arg-type]
            )  # fmt: skip
            if self.tracker.run_id and not run_id:
                self.store.set_field("wandb_run_id", self.tracker.run_id)
            try:
                yield self.tracker
            finally:
                self.tracker.finish()
                if isinstance(self._client, LLMClient):
                    self._client.close()
        if self.tracker.mode == "offline":
            console.print(
                f"W&B run written offline; upload with: wandb sync {self.root}/wandb/offline-run-*", soft_wrap=True
            )

    def execute(self) -> list[Round]:
        """Run (or continue) rounds until a stopping rule fires; returns every round's summary."""
        with self.session():
            rounds = self._rounds()
        from loop.run_report import write_run_report  # matplotlib loads only here, once the rounds are done

        report = write_run_report(self.root)
        console.print(f"per-round table: gaploop status {self.root}; report: {report}", soft_wrap=True)
        return rounds

    def _rounds(self) -> list[Round]:
        rounds: list[Round] = []
        for r in range(self.cfg.rounds.max_rounds + 1):
            try:
                rounds.append(self.run_round(r))
            except BudgetExceeded as err:
                # The round in progress is not trained on; its calls stay cached, so raising the budget and
                # resuming continues it without paying for them again.
                console.print(f"[bold]stopping in round {r}[/]: {err}")
                self.store.set_field("stop_reason", str(err))
                break
            print_round_table(rounds[-1], rounds[0])
            reason = stop_reason(self.cfg, [x.metrics for x in rounds])
            if reason:
                console.print(f"[bold]stopping after round {r}[/]: {reason}")
                self.store.set_field("stop_reason", reason)
                break
        self.store.set_field("status", "finished")
        if rounds:
            last = rounds[-1]
            self._tracker().summary(last.metrics)
            # The student the run ends with, by reference: checksums of its folder, nothing copied.
            self._tracker().log_artifact(
                f"{self.root.name}-student",
                "model",
                reference=self.files.at(last.index, F.MODEL),
                aliases=["final", f"round-{last.index}"],
                metadata={"round": last.index, "test/accuracy": last.metrics.get("test/accuracy")},
            )
        return rounds

    def run_round(self, r: int) -> Round:
        """One round, top to bottom; each step is skipped when already done with the same inputs."""
        s, f, run, c, syn = self.stages, self.files, self.steps.run, self.sections, self.cfg.synthesis
        if r == 0:
            run(r, "data", c("seed", "task", "teacher"), lambda: s.make_data(r))
            run(r, "build", [*c("seed", "student", "task"), f.at(0, F.ITEMS)], lambda: s.build_student(r))
        else:
            examiner = s.given(r, "examine", [self.cfg.examiner], ["examiner"])
            run(r, "examine", [*c("seed"), *examiner, f.at(r - 1, F.ITEMS)], lambda: s.examine(r))
            if syn.mix:  # every part's plugins (their files and state), and the shares and labels
                configs = [c for part in syn.mix for c in (part.plan, part.writer)]
                writing = s.given(r, "question", configs, ["plan", "writer"] * len(syn.mix))
                writing.append([part.model_dump(mode="json") for part in syn.mix])
            else:
                writing = s.given(r, "question", [syn.plan, syn.writer], ["plan", "writer"])
            budget = c("seed", "teacher", "task") + [syn.budget_per_round, f.at(r, F.PROFILE)]
            run(r, "question", [*budget, *writing], lambda: s.propose(r))
            run(r, "answer", [*c("teacher"), f.at(r, F.CANDIDATES)], lambda: s.answer(r))
            answered = f.at(r, F.ANSWERED)
            if syn.refine:
                refiners = s.given(r, "refine", syn.refine, ["refiner"] * len(syn.refine))
                run(r, "refine", [*c("teacher"), answered, *refiners], lambda: s.refine(r))
                answered = f.at(r, F.REFINED)
            curators = s.given(r, "assess", syn.curate, ["curator"] * len(syn.curate))  # type: ignore[arg-type]
            run(r, "assess", [*c("teacher"), answered, *curators], lambda: s.curate(r))
            selectors = s.given(r, "filter", syn.select, ["selector"] * len(syn.select))  # type: ignore[arg-type]
            given = [*c("student", "ifd"), f.at(r, F.ASSESSED), f.at(r, F.DROPPED_ASSESS), f.at(r, F.DROPPED_QUESTION)]
            run(r, "filter", [*given, *selectors], lambda: s.select(r))
        run(r, "train", [*c("seed", "student", "training"), *f.item_files(r)], lambda: s.train(r))
        examiner = [*c("examiner", "teacher"), f.at(r, F.PROFILE)]  # an examiner may add probes for points it grew
        examiner += s.probe_states(r)  # and a plan its own (an archive); none for a plan that keeps none
        run(r, "evaluate", [*c("seed", "student", "task"), *examiner, f.at(r, F.WEIGHTS)], lambda: s.evaluate(r))
        run(r, "log", [f.at(r, F.EVAL_TEST), f.at(r, F.ITEMS)], lambda: s.log(r, self._phases(r)))
        summary = f.json(r, F.SUMMARY)
        times = {**summary["times"], **self.steps.times.get(r, {})}
        return Round(r, summary["metrics"], times, summary.get("reasons", {}))

    def sections(self, *names: str) -> list[object]:
        """The config sections a step reads (part of its fingerprint: changing one redoes that step on)."""
        return [{name: self.config[name]} for name in names]

    def _phases(self, r: int) -> dict[str, dict]:
        """The manifest entries of round r's finished steps, by step name."""
        prefix = f"round_{r:03d}/"
        entries = self.store.manifest["phases"].items()  # type: ignore[union-attr]
        return {k[len(prefix) :]: v for k, v in entries if k.startswith(prefix) and v.get("status") == "done"}


def create_run(cfg: RunConfig, task: Task | None = None) -> tuple[RunStore, Task]:
    """A new run directory for `cfg`, made only after the checks that need no work pass: the task's local data
    files read, the model folders load (config and tokenizer)."""
    task = task or make_task(cfg)
    task.check()
    if cfg.synthesis.corpus is not None:  # read here, so a bad corpus fails before the run directory exists
        corpus_documents(cfg.synthesis.corpus)
    check_models(cfg)
    store = RunStore(default_run_dir(cfg))
    store.create(dump_config(cfg), cfg.name)
    return store, task


def start_run(cfg: RunConfig, client: Chat | None = None, task: Task | None = None) -> tuple[Path, list[Round]]:
    """A new run directory, then its rounds."""
    store, task = create_run(cfg, task)
    run_dir = store.root
    console.print(
        f"[bold]gaploop run[/] {cfg.name} -> {run_dir}  (resume with: gaploop resume {run_dir})", soft_wrap=True
    )
    with _say_how_to_resume(run_dir):
        return run_dir, Runner(cfg, store, client=client, task=task).execute()


def resume_run(run_dir: str | Path, client: Chat | None = None) -> list[Round]:
    """Continue a run from its directory with the config saved there."""
    store = RunStore(run_dir)
    _ = store.manifest  # a missing or corrupt manifest fails here, before any work
    cfg_path = Path(run_dir) / "config.yaml"
    cfg = config_from_dict(yaml.safe_load(cfg_path.read_text()), str(cfg_path))
    done = [k for k, v in store.manifest["phases"].items() if v.get("status") == "done"]  # type: ignore[union-attr]
    console.print(f"[bold]gaploop resume[/] {run_dir}: {len(done)} phases already done", soft_wrap=True)
    with _say_how_to_resume(run_dir):
        return Runner(cfg, store, client=client).execute()


def check_models(cfg: RunConfig) -> None:
    """The run's local model folders can load (config and tokenizer; not the weights): checked before any work."""
    if cfg.student.model != "tiny":
        check_model(cfg.student.model, "student.model")
    if cfg.ifd.model is not None:
        check_model(cfg.ifd.model, "ifd.model")
    llm = cfg.teacher.llm
    if cfg.teacher.kind == "llm" and llm.backend != "openai":
        check_model(llm.model, "teacher.llm.model")


@contextmanager
def _say_how_to_resume(run_dir: str | Path) -> Iterator[None]:
    """On Ctrl-C, a stop signal (see core.children) or an error: one line saying what happened and how to go on."""
    try:
        yield
    except KeyboardInterrupt as err:
        why = f"by {err.args[0]}" if isinstance(err, Stopped) else "by Ctrl-C"
        console.print(
            f"[yellow]stopped {why}[/]; its child processes were stopped and the unfinished phase is kept for "
            f"`gaploop resume {run_dir}`",
            soft_wrap=True,  # a command to copy: never broken over lines
        )
        raise
    except Exception:
        console.print(
            f"[red]the run stopped on an error[/] (below); the phases done and the unfinished one are kept: fix the "
            f"cause, then `gaploop resume {run_dir}`",
            soft_wrap=True,
        )
        raise
