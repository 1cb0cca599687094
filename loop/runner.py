"""The round state machine: `run` starts a run, `resume` continues one; a round reads top to bottom.

    round 0:  data -> build -> train(seed) -> evaluate(probe, test) -> log
    round r:  examine -> question -> answer -> assess -> filter -> train -> evaluate -> log

Every phase writes its records atomically and is then marked done in the manifest with the
fingerprint of its inputs; `resume` skips finished phases, so a crash or Ctrl-C at any moment loses
or duplicates nothing. The pool a round trains on is derived from the round files (seed + every
round's kept items), never appended to, so a redone phase cannot add an item twice.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from agents.assessor import WorldAssessor
from agents.examiner import WorldExaminer, node_of
from agents.llm.client import BudgetExceeded, LLMClient
from agents.questioner import WorldQuestioner
from agents.roles import WeaknessProfile
from agents.tasks.world import points_for
from agents.teacher import WorldOracle
from loop.config import RunConfig, config_from_dict, dump_config
from loop.console import console
from loop.evaluate import accuracy_by, accuracy_metrics
from loop.filters import apply_ifd, dedup_and_decontaminate
from loop.hygiene import decontaminate
from loop.llm_agents import (
    LLM_STRATEGIES,
    make_client,
    make_curator,
    make_judge,
    make_questioner,
    make_teacher,
    usage_metrics,
)
from loop.report import print_round_table
from loop.store import RunStore, default_run_dir, fingerprint, read_jsonl, write_jsonl, write_text_atomic
from loop.student import build_student, evaluate, in_child, resolve_device, run_child, train_student
from loop.tasks import Data, DatasetTask, make_task
from loop.tracking import Tracker

Record = dict[str, object]
# A test hook: "round_001/filter" makes that phase stop after its work, before its writes, so a test
# can kill the process at a known point. Never set in normal use.
HOLD_ENV = "GAPLOOP_TEST_HOLD"


@dataclass
class Round:
    """What one round did, for the summary table and the stopping rules."""

    index: int
    metrics: dict[str, float] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)


class Runner:
    """Runs the rounds of one run directory."""

    def __init__(self, cfg: RunConfig, store: RunStore) -> None:
        self.cfg = cfg
        self.store = store
        self.root = store.root
        self.task = make_task(cfg)
        if isinstance(self.task, DatasetTask) and (self.root / "taxonomy.json").exists():  # a resumed run
            self.task.described = json.loads((self.root / "taxonomy.json").read_text())
        self.points = cfg.task.points or points_for()
        syn = cfg.synthesis
        self.examiner = WorldExaminer(max_refinements=6 if syn.refine else 0)
        self.questioner = WorldQuestioner(
            syn.strategy,
            cfg.seed,
            cfg.task.difficulty,
            self.points,
            park_after=syn.park_after,
            curriculum=syn.curriculum,
            explore=syn.explore,
        )
        self.teacher = WorldOracle()
        # Curates unless an LLM curator is set: drops malformed items and teacher/reference disagreements.
        self.assessor = WorldAssessor(max_chars=self.task.max_item_chars, verifier=self.task.verifier)
        self.llm = cfg.teacher.kind == "llm"
        self._client: LLMClient | None = None
        self.tracker: Tracker | None = None
        self.cfg_fp = fingerprint(cfg.model_dump(mode="json"))

    # -- the loop ----------------------------------------------------------------------------------
    def execute(self) -> list[Round]:
        """Run (or continue) rounds until a stopping rule fires; returns every round's summary."""
        with self.store.lock():
            return self._execute()

    def _execute(self) -> list[Round]:
        self.tracker = Tracker(
            self.root,
            self.cfg.model_dump(mode="json"),
            mode=self.cfg.tracking.wandb_mode,
            project=self.cfg.tracking.project,
            entity=self.cfg.tracking.entity,
            name=self.root.name,
            tags=list(self.cfg.tracking.tags),
            run_id=self.store.manifest.get("wandb_run_id"),  # type: ignore[arg-type]
        )
        if self.tracker.run_id and not self.store.manifest.get("wandb_run_id"):
            self.store.set_field("wandb_run_id", self.tracker.run_id)
        rounds: list[Round] = []
        try:
            for r in range(self.cfg.rounds.max_rounds + 1):
                try:
                    rounds.append(self.run_round(r))
                except BudgetExceeded as err:
                    # The round in progress is not trained on; its calls stay cached, so raising the
                    # budget and resuming continues it without paying for them again.
                    console.print(f"[bold]stopping in round {r}[/]: {err}")
                    self.store.set_field("stop_reason", str(err))
                    break
                print_round_table(rounds[-1], rounds[0])
                reason = self.stop_reason(rounds)
                if reason:
                    console.print(f"[bold]stopping after round {r}[/]: {reason}")
                    self.store.set_field("stop_reason", reason)
                    break
            self.store.set_field("status", "finished")
            if rounds:
                self.tracker.summary(rounds[-1].metrics)
        finally:
            self.tracker.finish()
            if self._client is not None:
                self._client.close()
        if self.tracker.mode == "offline":
            console.print(f"W&B run written offline; upload with: wandb sync {self.root}/wandb/offline-run-*")
        console.print(f"per-round table: gaploop status {self.root}")
        return rounds

    def run_round(self, r: int) -> Round:
        """One round, top to bottom; each phase is skipped when already done with the same inputs."""
        rd = Round(index=r)
        t_round = time.perf_counter()
        if r == 0:
            self.phase(rd, "data", [], self.make_data)
            self.phase(rd, "build", [], self.build_student)
            if self.llm and self.cfg.teacher.llm.model == "tiny":
                self.phase(rd, "teacher", [], self.build_teacher)
        else:
            prev = self.store.round_dir(r - 1)
            self.phase(rd, "examine", [prev / "eval_probe.jsonl", prev / "items.jsonl"], self.examine)
            self.phase(rd, "question", [self.file(r, "profile.json")], self.question)
            self.phase(rd, "answer", [self.file(r, "candidates.jsonl")], self.answer)
            self.phase(rd, "assess", [self.file(r, "answered.jsonl")], self.assess)
            self.phase(
                rd, "filter", [self.file(r, "assessed.jsonl"), prev / "model" / "model.safetensors"], self.filter
            )
        self.phase(rd, "train", self.pool_files(r), self.train)
        self.phase(rd, "evaluate", [self.file(r, "model/model.safetensors")], self.evaluate)
        rd.times["round"] = time.perf_counter() - t_round
        self.phase(rd, "log", [self.file(r, "eval_test.jsonl")], self.log)
        summary = json.loads(self.file(r, "summary.json").read_text())
        rd.metrics = summary["metrics"]
        rd.times = {**summary["times"], **rd.times}
        return rd

    def phase(self, rd: Round, name: str, inputs: Sequence[Path], fn: Callable[[int], dict | None]) -> None:
        """Run `fn(round)` unless the manifest says it is done with the same inputs."""
        r = rd.index
        fp = fingerprint(self.cfg_fp, name, *inputs)
        if self.store.is_done(r, name, fp):
            entry = self.store.phase(r, name) or {}
            rd.times[name] = float(entry.get("stats", {}).get("seconds", 0.0))
            return
        self.store.mark_started(r, name, fp)
        t0 = time.perf_counter()
        stats = fn(r) or {}
        stats["seconds"] = time.perf_counter() - t0
        rd.times[name] = stats["seconds"]
        self.store.mark_done(r, name, fp, stats=stats)

    def hold(self, r: int, name: str) -> None:
        """The test hook (see HOLD_ENV): wait here to be killed."""
        if os.environ.get(HOLD_ENV) == f"round_{r:03d}/{name}":
            console.print(f"[test hook] holding in round {r} phase {name}")
            time.sleep(3600)

    def file(self, r: int, name: str) -> Path:
        """A path inside round r's folder."""
        return self.store.round_dir(r) / name

    def stop_reason(self, rounds: list[Round]) -> str | None:
        """The first stopping rule that fires, or None."""
        rc = self.cfg.rounds
        last = rounds[-1]
        acc = last.metrics.get("test/accuracy", 0.0)
        if rc.target_accuracy is not None and acc >= rc.target_accuracy:
            return f"target accuracy {rc.target_accuracy} reached ({acc:.3f})"
        if len(rounds) > rc.plateau_rounds:
            best_before = max(x.metrics.get("test/accuracy", 0.0) for x in rounds[: -rc.plateau_rounds])
            recent = max(x.metrics.get("test/accuracy", 0.0) for x in rounds[-rc.plateau_rounds :])
            if recent < best_before + rc.plateau_delta:
                return f"plateau: no gain over {best_before:.3f} in {rc.plateau_rounds} rounds"
        llm = self.cfg.teacher.llm
        spent_tokens, spent_cost = last.metrics.get("llm/total_tokens", 0.0), last.metrics.get("llm/total_cost", 0.0)
        if self.llm and llm.budget_tokens is not None and spent_tokens >= llm.budget_tokens:
            return f"LLM token budget spent ({int(spent_tokens)} >= {llm.budget_tokens})"
        if self.llm and llm.budget_cost is not None and spent_cost >= llm.budget_cost:
            return f"LLM cost budget spent (${spent_cost:.4f} >= ${llm.budget_cost})"
        total = sum(int(x.metrics.get("synth/kept", 0)) for x in rounds)
        if self.cfg.synthesis.max_total is not None and total >= self.cfg.synthesis.max_total:
            return f"synthesis budget spent ({total} >= {self.cfg.synthesis.max_total} items)"
        return None

    # -- round 0 -----------------------------------------------------------------------------------
    def make_data(self, r: int) -> dict:
        """The seed, the held-out test and (for a dataset) the fixed probe split, disjoint by construction."""
        data = self.task.make_data()
        taxonomy = self.task.label_points(data, self.client(r)) if self.task.wants_llm_taxonomy else None
        for item in data.seed:
            item.update(source="seed", round=0, strategy=None, parent_id=None, kept=True, drop_reason=None)
        self.hold(r, "data")
        if taxonomy is not None:
            write_text_atomic(self.root / "taxonomy.json", json.dumps(taxonomy, indent=1))
        write_jsonl(self.root / "test.jsonl", data.test)
        if not self.task.fresh_probes:
            write_jsonl(self.root / "probe.jsonl", data.probe)
        write_jsonl(self.file(0, "items.jsonl"), data.seed)
        return {**data.counts, **({"taxonomy_points": len(taxonomy)} if taxonomy else {})}

    def build_student(self, r: int) -> dict:
        """The base student: built from scratch for 'tiny' (into a temporary folder, then renamed)."""
        if self.cfg.student.model != "tiny":
            return {"base": self.cfg.student.model}
        tmp, final = self.root / "base.tmp", self.root / "base"
        for stale in (tmp, final):
            if stale.exists():
                shutil.rmtree(stale)
        data = Data(seed=read_jsonl(self.file(0, "items.jsonl")).rows, test=[], probe=self.fixed_probes())
        build_student(self.cfg, tmp, self.task.tokenizer_texts(data))
        self.hold(r, "build")
        os.replace(tmp, final)
        return {"base": str(final)}

    def build_teacher(self, r: int) -> dict:
        """The tiny chat teacher of the CPU LLM demo (loop/tiny_teacher.py), trained on the agents' requests."""
        from loop.tiny_teacher import build_tiny_teacher

        t0 = time.perf_counter()
        build_tiny_teacher(self.cfg, self.root / "teacher")
        self.hold(r, "teacher")
        return {"teacher": str(self.root / "teacher"), "compute_seconds": time.perf_counter() - t0}

    def client(self, r: int) -> LLMClient:
        """The LLM client (made at first use, after round 0 built any tiny teacher), counting for round r."""
        if self._client is None:
            llm = self.cfg.teacher.llm
            model = str(self.root / "teacher") if llm.model == "tiny" else llm.model
            self._client = make_client(self.cfg, self.root, model)
        self._client.round = r
        return self._client

    def base_model(self) -> Path:
        """Where the base student lives."""
        return self.root / "base" if self.cfg.student.model == "tiny" else Path(self.cfg.student.model)

    # -- round r >= 1 ------------------------------------------------------------------------------
    def examine(self, r: int) -> dict:
        """Weakness profile from the previous round's probes; counts what each node was fed."""
        probes = read_jsonl(self.file(r - 1, "eval_probe.jsonl")).rows
        prev_path = self.file(r - 1, "profile.json")
        previous = WeaknessProfile.from_json(json.loads(prev_path.read_text())) if prev_path.exists() else None
        profile = self.examiner.examine(probes, r, previous)
        refined = {str(x["point"]) for x in profile.refinements}
        fed_now: set[str] = set()
        for item in read_jsonl(self.file(r - 1, "items.jsonl")).rows:
            if item.get("source") == "synthetic" and item.get("kept"):
                node = node_of(item, refined)
                profile.fed[node] = profile.fed.get(node, 0) + 1
                fed_now.add(node)
        for node in fed_now:
            profile.fed_rounds[node] = profile.fed_rounds.get(node, 0) + 1
        self.hold(r, "examine")
        write_text_atomic(self.file(r, "profile.json"), json.dumps(profile.to_json(), indent=1))
        weak = [n.node for n in profile.nodes if n.weak]
        return {"weak_nodes": len(weak), "refinements": len(profile.refinements)}

    def question(self, r: int) -> dict:
        """Candidate items for the weak spots."""
        profile = WeaknessProfile.from_json(json.loads(self.file(r, "profile.json").read_text()))
        probes = read_jsonl(self.file(r - 1, "eval_probe.jsonl")).rows
        llm_writes = self.llm and self.cfg.synthesis.strategy in LLM_STRATEGIES
        if llm_writes:
            questioner = make_questioner(self.cfg, self.client(r), self.task.taxonomy(self.pool(0)))
        else:
            questioner = self.questioner
        known = [*self.pool(r - 1), *(row for rows in self.evaluation_sets(r).values() for row in rows)]
        questioner.remember(row["instruction"] for row in known)
        failures = [p for p in probes if not p["correct"]]
        successes = [p for p in probes if p["correct"]]
        t0 = time.perf_counter()
        candidates = questioner.question(profile, failures, self.cfg.synthesis.budget_per_round, r, successes=successes)
        candidates = [self.task.shape_candidate(c) for c in candidates]
        model_seconds = time.perf_counter() - t0 if llm_writes else 0.0
        rejected = [self.rejected_record(r, i, x) for i, x in enumerate(getattr(questioner, "rejected", []))]
        self.hold(r, "question")
        write_jsonl(self.file(r, "dropped_question.jsonl"), rejected)
        write_jsonl(self.file(r, "candidates.jsonl"), candidates)
        return {"candidates": len(candidates), "rejected": len(rejected), "compute_seconds": model_seconds}

    def rejected_record(self, r: int, i: int, rejected: Record) -> Record:
        """A request the LLM Questioner gave up on, as a dropped synthetic item with its reason."""
        return {
            "id": f"r{r:03d}-rejected-{i:05d}",
            "instruction": "",  # no usable item came back; the model's last reply is kept below
            "reply": str(rejected.get("excerpt") or ""),
            "source": "synthetic",
            "round": r,
            "strategy": self.cfg.synthesis.strategy,
            "parent_id": rejected.get("parent_id"),
            "kept": False,
            "drop_reason": f"questioner: {rejected.get('reason')}",
        }

    def answer(self, r: int) -> dict:
        """The teacher answers every candidate."""
        teacher = make_teacher(self.cfg, self.client(r), self.task) if self.llm else self.teacher
        t0 = time.perf_counter()
        answered = [
            self.task.shape_answer(a) for a in teacher.answer(read_jsonl(self.file(r, "candidates.jsonl")).rows)
        ]
        model_seconds = time.perf_counter() - t0 if self.llm else 0.0
        self.hold(r, "answer")
        write_jsonl(self.file(r, "answered.jsonl"), answered)
        return {"answered": sum(bool(a["output"]) for a in answered), "compute_seconds": model_seconds}

    def assess(self, r: int) -> dict:
        """The Assessor curates: malformed items and teacher/reference disagreements are dropped."""
        by_llm = self.llm and self.cfg.teacher.curate
        curator = make_curator(self.cfg, self.client(r), self.task) if by_llm else self.assessor
        t0 = time.perf_counter()
        kept, dropped = curator.curate(read_jsonl(self.file(r, "answered.jsonl")).rows)
        model_seconds = time.perf_counter() - t0 if by_llm else 0.0
        self.hold(r, "assess")
        write_jsonl(self.file(r, "assessed.jsonl"), kept)
        write_jsonl(self.file(r, "dropped_assess.jsonl"), dropped)
        return {"kept": len(kept), "dropped": len(dropped), "compute_seconds": model_seconds}

    def filter(self, r: int) -> dict:
        """Dedup against the pool, decontaminate against probes and test, IFD by the student of r-1."""
        items = read_jsonl(self.file(r, "assessed.jsonl")).rows
        f = self.cfg.filters
        against = self.evaluation_sets(r)
        evaluation = [row for rows in against.values() for row in rows]
        kept, dropped = dedup_and_decontaminate(items, self.pool(r - 1), evaluation, dedup=f.dedup)
        if f.decontamination == "ngram" and kept:
            kept, ngram_dropped = decontaminate(kept, against, n=f.ngram, near_threshold=f.near_copy)
            dropped += ngram_dropped
        ifd_seconds = 0.0
        if self.cfg.ifd.enabled and kept:
            t0 = time.perf_counter()
            scores = self.score_ifd(self.file(r - 1, "model"), kept)
            ifd_seconds = time.perf_counter() - t0
            kept, ifd_dropped = apply_ifd(kept, scores, self.cfg.ifd.threshold, self.cfg.ifd.top_share)
            dropped += ifd_dropped
        else:
            kept = [{**k, "kept": True, "drop_reason": None} for k in kept]
        dropped += read_jsonl(self.file(r, "dropped_assess.jsonl")).rows
        question_drops = self.file(r, "dropped_question.jsonl")
        if question_drops.exists():  # absent in runs made before the LLM Questioner existed
            dropped += read_jsonl(question_drops).rows
        self.hold(r, "filter")
        write_jsonl(self.file(r, "items.jsonl"), kept + dropped)
        return {"kept": len(kept), "dropped": len(dropped), "compute_seconds": ifd_seconds}

    def score_ifd(self, model_dir: Path, items: Sequence[Record]) -> list:
        """IFD of items by a student: in a child process on GPUs (student.inference_process), else here."""
        from trainers.ifd import IFDScore, score_ifd
        from trainers.tiny import load_student

        s = self.cfg.student
        if in_child(self.cfg):
            with tempfile.TemporaryDirectory(prefix="gaploop-ifd-") as tmp:
                data, out = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
                fields = ("instruction", "input", "output")
                write_jsonl(data, [{f: i[f] for f in fields if f in i} for i in items])
                args = ["--model", str(model_dir), "--data", str(data), "--out", str(out), "--template", s.template]
                args += ["--max-length", str(s.max_length), "--batch-size", str(self.cfg.ifd.batch_size)]
                args += ["--device", resolve_device(s.device)]
                run_child("trainers.ifd", args, "IFD scoring")
                rows = read_jsonl(out).rows
            return [IFDScore(r["loss_cond"], r["loss_alone"], r["ifd"], r.get("ifd_reason")) for r in rows]  # type: ignore[arg-type]

        model, tokenizer = load_student(model_dir, device=resolve_device(self.cfg.student.device))
        scores = score_ifd(
            model,
            tokenizer,
            items,
            template=self.cfg.student.template,
            max_length=self.cfg.student.max_length,
            batch_size=self.cfg.ifd.batch_size,
        )
        del model
        return scores

    def evaluation_sets(self, r: int) -> dict[str, list[Record]]:
        """The held-out test and every probe drawn before round r: no synthetic item may restate one."""
        probes = [row for k in range(r) for row in read_jsonl(self.file(k, "eval_probe.jsonl")).rows]
        return {"test": read_jsonl(self.root / "test.jsonl").rows, "probe": probes}

    # -- every round -------------------------------------------------------------------------------
    def pool_files(self, r: int) -> list[Path]:
        """The item files whose kept rows make up round r's training pool."""
        return [self.file(k, "items.jsonl") for k in range(r + 1)]

    def pool(self, r: int) -> list[Record]:
        """Seed + every kept synthetic item of rounds 1..r."""
        return [row for f in self.pool_files(r) for row in read_jsonl(f).rows if row.get("kept")]

    def train(self, r: int) -> dict:
        """SFT with DeepSpeed on the pool, from the base or from the previous student."""
        t0 = time.perf_counter()
        pool = self.pool(r)
        data = self.file(r, "train.jsonl")
        write_jsonl(data, [{"instruction": p["instruction"], "output": p["output"]} for p in pool])
        start = self.base_model() if self.cfg.training.from_base or r == 0 else self.file(r - 1, "model")
        out = self.file(r, "sft")
        stats = train_student(self.cfg, start, data, out, self.tracker, label=f"round {r} train", len_pool=len(pool))
        self.hold(r, "train")
        final = self.file(r, "model")
        if final.exists():
            shutil.rmtree(final)
        os.replace(out / "model", final)
        # The whole child (start-up, DeepSpeed init, the loop, the save) is model work, not orchestration.
        return {**stats, "pool": len(pool), "compute_seconds": time.perf_counter() - t0}

    def fixed_probes(self) -> list[Record]:
        """A dataset task's probe split, drawn once in round 0 ([] where probes are drawn fresh each round)."""
        return [] if self.task.fresh_probes else read_jsonl(self.root / "probe.jsonl").rows

    def evaluate(self, r: int) -> dict:
        """Probes (never trained on, never in the test) and the held-out test, graded by the task."""
        test = read_jsonl(self.root / "test.jsonl").rows
        if self.task.fresh_probes:
            seen = {str(x["instruction"]) for x in test} | {str(x["instruction"]) for x in self.pool(r)}
            probes = self.task.probes(r, seen)
        else:
            probes = self.fixed_probes()
        t0 = time.perf_counter()
        answered = evaluate(self.cfg, self.file(r, "model"), probes + test, f"round {r} evaluate", stop=self.task.stop)
        if self.task.kind == "open":  # only a judge can grade free text; its calls count as model time
            graded = make_judge(self.cfg, self.client(r), self.task).grade(answered)
        else:
            graded = self.task.grade(answered)
        seconds = time.perf_counter() - t0
        self.hold(r, "evaluate")
        write_jsonl(self.file(r, "eval_probe.jsonl"), graded[: len(probes)])
        write_jsonl(self.file(r, "eval_test.jsonl"), graded[len(probes) :])
        return {"probes": len(probes), "test": len(test), "compute_seconds": seconds}

    def log(self, r: int) -> dict:
        """Round metrics to metrics.jsonl and W&B, tables of failures and new items, summary.json."""
        test = read_jsonl(self.file(r, "eval_test.jsonl")).rows
        probes = read_jsonl(self.file(r, "eval_probe.jsonl")).rows
        items = read_jsonl(self.file(r, "items.jsonl")).rows
        metrics: dict[str, float] = {**accuracy_metrics(test, "test"), **accuracy_metrics(probes, "probe")}
        for point, acc in accuracy_by(test, "knowledge_point").items():
            metrics[f"test/point/{point}"] = acc
        synthetic = [i for i in items if i.get("source") == "synthetic"]
        kept = [i for i in synthetic if i.get("kept")]
        drops = Counter(str(i.get("drop_reason")).split(":")[0] for i in synthetic if not i.get("kept"))
        ifds = [float(i["ifd"]) for i in synthetic if i.get("ifd") is not None]
        metrics.update(
            {
                "synth/candidates": len(synthetic),
                "synth/kept": len(kept),
                "synth/dropped": len(synthetic) - len(kept),
                **{f"synth/dropped/{k.replace(' ', '_')}": v for k, v in drops.items()},
                "pool/size": len(self.pool(r)),
            }
        )
        if ifds:
            metrics.update({"ifd/mean": statistics.fmean(ifds), "ifd/median": statistics.median(ifds)})
        if self.llm:
            metrics.update(usage_metrics(self.client(r), r))
        entries = {k: v for k, v in self.store.manifest["phases"].items() if k.startswith(f"round_{r:03d}/")}  # type: ignore[union-attr]
        times = {k.split("/")[1]: float(v.get("stats", {}).get("seconds", 0.0)) for k, v in entries.items()}
        compute = sum(float(v.get("stats", {}).get("compute_seconds", 0.0)) for v in entries.values())
        wall = sum(times.values())
        metrics.update({f"time/{k}": v for k, v in times.items()})
        metrics["time/round"] = wall
        metrics["time/orchestration_share"] = max(0.0, wall - compute) / wall if wall else 0.0
        assert self.tracker is not None
        self.hold(r, "log")
        self.tracker.log(metrics, round=r)
        self.tracker.log_table("test/failures", [f for f in test if not f["correct"]][:200], round=r)
        if synthetic:
            self.tracker.log_table("synth/items", synthetic[:500], round=r)
        if ifds:
            self.tracker.log_histogram("ifd/hist", ifds, round=r)
        write_text_atomic(
            self.file(r, "summary.json"),
            json.dumps({"round": r, "metrics": metrics, "times": times, "drops": dict(drops)}, indent=1),
        )
        return {}


def start_run(cfg: RunConfig) -> tuple[Path, list[Round]]:
    """A new run directory, then its rounds."""
    run_dir = default_run_dir(cfg)
    store = RunStore(run_dir)
    store.create(dump_config(cfg), cfg.name)
    console.print(f"[bold]gaploop run[/] {cfg.name} -> {run_dir}  (resume with: gaploop resume {run_dir})")
    return run_dir, Runner(cfg, store).execute()


def resume_run(run_dir: str | Path) -> list[Round]:
    """Continue a run from its directory with the config saved there."""
    store = RunStore(run_dir)
    _ = store.manifest  # a missing or corrupt manifest fails here, before any work
    cfg_path = Path(run_dir) / "config.yaml"
    cfg = config_from_dict(yaml.safe_load(cfg_path.read_text()), str(cfg_path))
    done = [k for k, v in store.manifest["phases"].items() if v.get("status") == "done"]  # type: ignore[union-attr]
    console.print(f"[bold]gaploop resume[/] {run_dir}: {len(done)} phases already done")
    return Runner(cfg, store).execute()
