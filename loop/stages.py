"""The stages of a round, each a function of what it is given that returns its outputs (loop/steps.py writes
them). The plugins the config names do the work; a stage hands each plugin exactly the round inputs its
class declares in `reads`:

    profile           the round's weakness profile (examine's output)
    previous_profile  the profile of the round before (None in round 1)
    probes            the previous round's graded probes
    failures          those of them the student got wrong; successes: those it got right
    taxonomy          the task's knowledge points [{id, category, description}]
    pool              the training pool so far (seed + kept items of earlier rounds)
    evaluation        {"test": held-out test, "probe": every probe drawn before this round}
    known             the questions that exist already (every item asked so far and the evaluation sets)
    student           the student's IFD scorer: score(items, reverse=False) -> [IFDScore]
    answers           the student's greedy answers: answer(items) -> the items with its `prediction`
    state             the plugin's own state after the previous round (None at first)

A plugin may also report round metrics (`metrics() -> {name: value}`, kept in its step's stats and logged
with the round's), and a plan with state may keep probes (`probes() -> [item]`, e.g. an archive of items
the student failed), which the round's evaluation asks beside the task's own.

round 0:  data -> build -> train(seed) -> evaluate(probe, test) -> log
round r:  examine -> question (plan x writer) -> answer -> refine* -> assess (curate*) -> filter (select*)
          -> train -> evaluate -> log
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from agents.examiner import node_of
from agents.llm.client import LLMClient
from agents.proposal import Written
from agents.roles import WeaknessProfile
from core.jsonl import read_jsonl, write_jsonl
from core.plugins import Inputs, Plugin, PluginConfig
from core.records import Record, drop_plugin, drop_reason_key, item_id, kept
from core.text import question_key
from loop import files as F
from loop.config import RunConfig
from loop.evaluate import accuracy_by, accuracy_metrics
from loop.files import RunFiles
from loop.parts import build, make_judge, plugin_parts, score_ifd, teacher_for, usage_metrics
from loop.steps import Out
from loop.student import RoundTrainer, build_student, evaluate, train_student
from loop.tasks import Data, Task
from loop.tracking import Tracker


class Stages:
    """The stage functions of one run: they read the run's files and return what they write."""

    def __init__(
        self,
        cfg: RunConfig,
        files: RunFiles,
        task: Task,
        client: Callable[[int], LLMClient] | None,
        tracker: Callable[[], Tracker],
    ) -> None:
        self.cfg, self.files, self.task = cfg, files, task
        self._client, self._tracker = client, tracker

    # -- plumbing ---------------------------------------------------------------------------------
    def client(self, r: int) -> LLMClient | None:
        """The chat client counting for round r, or None where the run has no chat model."""
        return self._client(r) if self._client is not None else None

    def plugin(self, kind: str, config: PluginConfig, r: int) -> Plugin:
        """A plugin of this run, built for round r (with the student's trainer for models of its own)."""
        previous = self.files.at(r - 1, F.MODEL) if r > 0 else None
        trainer = RoundTrainer(self.cfg, self.files.at(r, ""), self.base_model(), previous)
        return build(kind, config, plugin_parts(self.cfg, self.task, self.client(r), trainer))

    def inputs(self, plugin: Plugin, r: int) -> Inputs:
        """The round inputs of round r, as the plugin may read them."""
        f, prev = self.files, r - 1
        providers: dict[str, Callable[[], object]] = {
            "profile": lambda: WeaknessProfile.from_json(f.json(r, F.PROFILE)),
            "previous_profile": lambda: self._profile(prev),
            "probes": lambda: f.rows(prev, F.EVAL_PROBE),
            "failures": lambda: [p for p in f.rows(prev, F.EVAL_PROBE) if not p["correct"]],
            "successes": lambda: [p for p in f.rows(prev, F.EVAL_PROBE) if p["correct"]],
            "taxonomy": lambda: self.task.taxonomy(f.pool(0)),
            "pool": lambda: f.pool(prev),
            "evaluation": lambda: f.evaluation(r),
            "known": lambda: [
                *(str(x["instruction"]) for x in f.asked(prev)),
                *(str(x["instruction"]) for rows in f.evaluation(r).values() for x in rows),
            ],
            "student": lambda: lambda items, reverse=False: score_ifd(self.cfg, self._scorer(prev), items, reverse),
            "answers": lambda: (
                lambda items: evaluate(
                    self.cfg, f.at(prev, F.MODEL), list(items), f"round {r} student answers", stop=self.task.stop
                )
            ),
            "state": lambda: self._state(plugin, prev),
        }
        return Inputs(type(plugin), providers)

    def given(self, r: int, stage: str, configs: Sequence[PluginConfig], kinds: Sequence[str]) -> list[object]:
        """A step's fingerprint inputs: its plugins' configs and the files behind every input they read."""
        from core.plugins import get

        f, prev = self.files, r - 1
        reads = {name for kind, c in zip(kinds, configs, strict=True) for name in get(kind, c.name).reads}
        paths: dict[str, list[Path | str]] = {
            "profile": [f.at(r, F.PROFILE)],
            "previous_profile": [f.at(prev, F.PROFILE)],
            "probes": [f.at(prev, F.EVAL_PROBE)],
            "failures": [f.at(prev, F.EVAL_PROBE)],
            "successes": [f.at(prev, F.EVAL_PROBE)],
            "taxonomy": [f.root / F.TAXONOMY, f.at(0, F.ITEMS)],
            "pool": f.item_files(prev),
            "evaluation": [f.root / F.TEST, *f.probe_files(r)],
            "known": [*f.item_files(prev), f.root / F.TEST, *f.probe_files(r)],
            "student": [f.at(prev, F.WEIGHTS)] if self.cfg.ifd.model is None else [f"ifd.model={self.cfg.ifd.model}"],
            "answers": [f.at(prev, F.WEIGHTS)],
            "state": [f.state(prev, kind, c.name) for kind, c in zip(kinds, configs, strict=True)],
        }
        return [stage, [c.model_dump(mode="json") for c in configs], *(p for n in sorted(reads) for p in paths[n])]

    def _scorer(self, r: int) -> Path | str:
        """The model that scores IFD for round r+1: the student of round r, or the proxy `ifd.model`."""
        return self.cfg.ifd.model if self.cfg.ifd.model is not None else self.files.at(r, F.MODEL)

    def _profile(self, r: int) -> WeaknessProfile | None:
        path = self.files.at(r, F.PROFILE)
        return WeaknessProfile.from_json(json.loads(path.read_text())) if path.exists() else None

    def _state(self, plugin: Plugin, r: int) -> dict | None:
        path = self.files.state(r, plugin.kind, plugin.name)
        return json.loads(path.read_text()) if path.exists() else None

    # -- round 0 ----------------------------------------------------------------------------------
    def make_data(self, r: int) -> Out:
        """The seed, the held-out test and (for a dataset) the fixed probe split, disjoint by construction."""
        data = self.task.make_data()
        # The client only where the taxonomy needs it (a local chat model takes seconds to load).
        client = self.client(r) if self.task.wants_llm_taxonomy else None
        taxonomy = self.task.label_points(data, client) if client is not None else None
        for item in data.seed:
            item.update(source="seed", round=0, strategy=None, parent_id=None, kept=True, drop_reason=None)
        out = Out(stats={**data.counts, **({"taxonomy_points": len(taxonomy)} if taxonomy else {})})
        if taxonomy is not None:
            out.files[self.files.root / F.TAXONOMY] = json.dumps(taxonomy, indent=1)
        out.files[self.files.root / F.TEST] = data.test
        if not self.task.fresh_probes:
            out.files[self.files.root / F.PROBE] = data.probe
        out.files[self.files.at(0, F.ITEMS)] = data.seed
        return out

    def build_student(self, r: int) -> Out:
        """The base student: built from scratch for 'tiny' (into a temporary folder, then moved in place)."""
        if self.cfg.student.model != "tiny":
            return Out(stats={"base": self.cfg.student.model})
        tmp = self.files.root / "base.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        data = Data(seed=self.files.rows(0, F.ITEMS), test=[], probe=self.fixed_probes())
        build_student(self.cfg, tmp, self.task.tokenizer_texts(data))
        return Out(files={self.files.root / "base": tmp}, stats={"base": str(self.files.root / "base")})

    def base_model(self) -> Path:
        """Where the base student lives."""
        return self.files.root / "base" if self.cfg.student.model == "tiny" else Path(self.cfg.student.model)

    def fixed_probes(self) -> list[Record]:
        """A dataset task's probe split, drawn once in round 0 ([] where probes are drawn fresh each round)."""
        return [] if self.task.fresh_probes else read_jsonl(self.files.root / F.PROBE).rows

    # -- round r >= 1 -----------------------------------------------------------------------------
    def examine(self, r: int) -> Out:
        """The weakness profile from the previous round's probes; counts what each node was fed."""
        examiner = self.plugin("examiner", self.cfg.examiner, r)
        profile: WeaknessProfile = examiner.examine(self.inputs(examiner, r), r)  # type: ignore[attr-defined]
        refined = {str(x["point"]) for x in profile.refinements}
        fed_now: set[str] = set()
        for item in self.files.rows(r - 1, F.ITEMS):
            if item.get("source") == "synthetic" and item.get("kept"):
                node = node_of(item, refined)
                profile.fed[node] = profile.fed.get(node, 0) + 1
                fed_now.add(node)
        for node in fed_now:
            profile.fed_rounds[node] = profile.fed_rounds.get(node, 0) + 1
        weak = [n.node for n in profile.nodes if n.weak]
        stats = {"weak_nodes": len(weak), "refinements": len(profile.refinements)}
        return Out(files={self.files.at(r, F.PROFILE): profile.to_json()}, stats=stats)

    def propose(self, r: int) -> Out:
        """Candidate items: the plan decides who gets how many, the writer writes them; with `synthesis.mix`,
        each part (a plan x writer) writes its share of the budget and its items carry its label in `mix`."""
        syn = self.cfg.synthesis
        parts = syn.mix or [None]
        budgets = shares_of(syn.budget_per_round, [p.share for p in syn.mix]) if syn.mix else [syn.budget_per_round]
        candidates: list[Record] = []
        rejected: list[Record] = []
        out = Out(stats={"compute_seconds": 0.0})
        for part, budget in zip(parts, budgets, strict=True):
            plan_cfg, writer_cfg = (syn.plan, syn.writer) if part is None else (part.plan, part.writer)
            label = None if part is None else str(part.label)
            written, plan_name, seconds = self._write(r, plan_cfg, writer_cfg, budget, label, out)  # type: ignore[arg-type]
            new = [self.task.shape_candidate(c) for c in written.items]
            gone = [self._rejected(r, len(rejected) + i, x, plan_name) for i, x in enumerate(written.rejected)]
            if label is not None:  # ids stay unique across parts that share a plan
                new = [{**c, "id": item_id(r, label, k), "mix": label} for k, c in enumerate(new)]
                gone = [{**g, "mix": label} for g in gone]
                out.stats[f"mix/{label}/candidates"] = len(new)
            candidates += new
            rejected += gone
            out.stats["compute_seconds"] += seconds
        out.stats.update(candidates=len(candidates), rejected=len(rejected))
        out.files[self.files.at(r, F.DROPPED_QUESTION)] = rejected
        out.files[self.files.at(r, F.CANDIDATES)] = candidates
        return out

    def _write(
        self, r: int, plan_cfg: PluginConfig, writer_cfg: PluginConfig, budget: int, label: str | None, out: Out
    ) -> tuple[Written, str, float]:
        """One plan x writer over `budget` items; its plugins' new state goes into `out`."""
        plan, writer = self.plugin("plan", plan_cfg, r), self.plugin("writer", writer_cfg, r)
        for plugin in (plan, writer):  # a plugin with state across rounds (an archive, an evolving method)
            if "state" in plugin.reads:
                plugin.load_state(self.inputs(plugin, r)["state"])
        # The writer's tag keeps the draws of runs made before the plugin redesign; a mix part adds its label.
        key = f"{self.cfg.seed}:{getattr(writer, 'rng_tag', writer.name)}:{plan.name}:{r}"
        rng = random.Random(key if label is None else f"{key}:{label}")
        t0 = time.perf_counter()
        proposal = plan.propose(self.inputs(plan, r), budget, r, rng)  # type: ignore[attr-defined]
        written: Written = writer.write(proposal, budget, r, rng, self.inputs(writer, r), plan.name)  # type: ignore[attr-defined]
        seconds = time.perf_counter() - t0 if self.client(r) is not None else 0.0
        for plugin in (plan, writer):
            state = plugin.state()
            if state is not None:
                out.files[self.files.state(r, plugin.kind, plugin.name)] = state
            if hasattr(plugin, "metrics"):  # logged with the round's metrics (loop/stages.py round_metrics)
                out.stats.setdefault("metrics", {}).update(plugin.metrics())  # type: ignore[union-attr]
        return written, plan.name, seconds

    def _rejected(self, r: int, i: int, rejected: Record, strategy: str) -> Record:
        """An ask the writer gave up on, as a dropped synthetic item with its reason."""
        return {
            "id": f"r{r:03d}-rejected-{i:05d}",
            "instruction": "",  # no usable item came back; the model's last reply is kept below
            "reply": str(rejected.get("excerpt") or ""),
            "source": "synthetic",
            "round": r,
            "strategy": strategy,
            "parent_id": rejected.get("parent_id"),
            "kept": False,
            "drop_reason": f"questioner: {rejected.get('reason')}",
        }

    def answer(self, r: int) -> Out:
        """The teacher answers every candidate, except those whose writer gave the answer itself (`answered`: the
        document a back-translated instruction was written for)."""
        client = self.client(r)
        teacher = teacher_for(self.cfg, client, self.task)
        candidates = self.files.rows(r, F.CANDIDATES)
        t0 = time.perf_counter()
        answers = iter(teacher.answer([c for c in candidates if not c.get("answered")]))
        answered = [self.task.shape_answer(c if c.get("answered") else next(answers)) for c in candidates]
        seconds = time.perf_counter() - t0 if client is not None else 0.0
        stats = {"answered": sum(bool(a["output"]) for a in answered), "compute_seconds": seconds}
        return Out(files={self.files.at(r, F.ANSWERED): answered}, stats=stats)

    def refine(self, r: int) -> Out:
        """Each refiner rewrites the answered items in turn (answers, instructions), keeping provenance."""
        items = self.files.rows(r, F.ANSWERED)
        t0 = time.perf_counter()
        for config in self.cfg.synthesis.refine:
            refiner = self.plugin("refiner", config, r)
            items = refiner.refine(items, self.inputs(refiner, r))  # type: ignore[attr-defined]
        stats = {"refined": len(items), "compute_seconds": time.perf_counter() - t0}
        return Out(files={self.files.at(r, F.REFINED): items}, stats=stats)

    def curate(self, r: int) -> Out:
        """Each curator drops items with its reason; the rest go on to the next."""
        source = F.REFINED if self.cfg.synthesis.refine else F.ANSWERED
        items, dropped, model_seconds = self.files.rows(r, source), [], 0.0
        for config in self.cfg.synthesis.curate:
            curator = self.plugin("curator", config, r)
            t0 = time.perf_counter()
            items, out = curator.curate(items, self.inputs(curator, r))  # type: ignore[attr-defined]
            model_seconds += time.perf_counter() - t0 if curator.needs else 0.0  # a model did the work
            dropped += out
        files = {self.files.at(r, F.ASSESSED): items, self.files.at(r, F.DROPPED_ASSESS): dropped}
        return Out(files=files, stats={"kept": len(items), "dropped": len(dropped), "compute_seconds": model_seconds})

    def select(self, r: int) -> Out:
        """Each selector keeps or drops against the pool, the evaluation sets and the student; every item of the
        round (kept, and dropped by any stage) ends in items.jsonl with its reason."""
        items, dropped, model_seconds = self.files.rows(r, F.ASSESSED), [], 0.0
        for config in self.cfg.synthesis.select:
            selector = self.plugin("selector", config, r)
            t0 = time.perf_counter()
            items, out = selector.select(items, self.inputs(selector, r))  # type: ignore[attr-defined]
            model_seconds += time.perf_counter() - t0 if selector.needs else 0.0  # the student scored
            dropped += out
        items = [item if item.get("kept") else kept(item) for item in items]
        dropped += self.files.rows(r, F.DROPPED_ASSESS)
        if self.files.at(r, F.DROPPED_QUESTION).exists():  # absent in runs made before the LLM Questioner existed
            dropped += self.files.rows(r, F.DROPPED_QUESTION)
        stats = {"kept": len(items), "dropped": len(dropped), "compute_seconds": model_seconds}
        return Out(files={self.files.at(r, F.ITEMS): items + dropped}, stats=stats)

    # -- every round ------------------------------------------------------------------------------
    def train(self, r: int) -> Out:
        """SFT with DeepSpeed on the pool, from the base or from the previous student."""
        t0 = time.perf_counter()
        pool = self.files.pool(r)
        data = self.files.at(r, F.TRAIN)
        write_jsonl(data, [{"instruction": p["instruction"], "output": p["output"]} for p in pool])
        start = self.base_model() if self.cfg.training.from_base or r == 0 else self.files.at(r - 1, F.MODEL)
        sft = self.files.at(r, "sft")
        stats = train_student(self.cfg, start, data, sft, self._tracker(), label=f"round {r} train", len_pool=len(pool))
        # The whole child (start-up, DeepSpeed init, the loop, the save) is model work, not orchestration.
        stats = {**stats, "pool": len(pool), "compute_seconds": time.perf_counter() - t0}
        return Out(files={self.files.at(r, F.MODEL): sft / "model"}, stats=stats)

    def evaluate(self, r: int) -> Out:
        """Probes (never trained on, never in the test) and the held-out test, graded by the task."""
        test = self.files.test()
        if self.task.fresh_probes:
            seen = {str(x["instruction"]) for x in test} | {str(x["instruction"]) for x in self.files.pool(r)}
            probes = self.task.probes(r, seen)
        else:
            probes = self.fixed_probes()
        t0 = time.perf_counter()
        probes += self._examiner_probes(r, [str(x["instruction"]) for x in [*test, *probes]])
        probes += self._plan_probes(r, [str(x["instruction"]) for x in [*test, *probes]])
        answered = evaluate(
            self.cfg, self.files.at(r, F.MODEL), probes + test, f"round {r} evaluate", stop=self.task.stop
        )
        client = self.client(r)
        if self.task.kind == "open" and client is not None:  # only a judge can grade free text
            graded = make_judge(self.cfg, client, self.task).grade(answered)
        else:
            graded = self.task.grade(answered)
        files = {
            self.files.at(r, F.EVAL_PROBE): graded[: len(probes)],
            self.files.at(r, F.EVAL_TEST): graded[len(probes) :],
        }
        stats = {"probes": len(probes), "test": len(test), "compute_seconds": time.perf_counter() - t0}
        return Out(files=files, stats=stats)

    def _examiner_probes(self, r: int, known: list[str]) -> list[Record]:
        """Probes for points the examiner added that the task cannot generate: written by the examiner's model,
        answered by the teacher (an item the teacher cannot answer is not asked)."""
        profile = self._profile(r)
        if profile is None or self.cfg.examiner is None:  # round 0 has no profile yet
            return []
        examiner = self.plugin("examiner", self.cfg.examiner, r)
        if not hasattr(examiner, "probes"):
            return []
        written = examiner.probes(profile, r, [*known, *(str(x["instruction"]) for x in self.files.pool(r))])
        if not written:
            return []
        answered = teacher_for(self.cfg, self.client(r), self.task).answer(written)
        return [a for a in answered if str(a.get("output") or "").strip()]

    def _plans_with_probes(self, r: int) -> list[PluginConfig]:
        """The plans of the run (one per mix part, or the one plan) that keep probes of their own; none in round 0,
        where no plan has run yet."""
        from core.plugins import get

        syn = self.cfg.synthesis
        plans = [part.plan for part in syn.mix] if syn.mix else [syn.plan]
        return [c for c in plans if r > 0 and c is not None and hasattr(get("plan", c.name), "probes")]

    def probe_states(self, r: int) -> list[Path]:
        """The state files the plans' own probes of round r come from (part of the evaluation's fingerprint)."""
        return [self.files.state(r, "plan", c.name) for c in self._plans_with_probes(r)]

    def _plan_probes(self, r: int, known: list[str]) -> list[Record]:
        """Probes a plan keeps in its state after round r's question step (an archive's elites), asked after
        training beside the task's; one without an answer gets the teacher's, and an unanswered one is not asked."""
        seen = {question_key(q) for q in known}
        probes: list[Record] = []
        for config in self._plans_with_probes(r):
            plan = build("plan", config, plugin_parts(self.cfg, self.task, None))  # its probes need no model
            plan.load_state(self._state(plan, r))
            for probe in plan.probes():  # type: ignore[attr-defined]
                if question_key(probe["instruction"]) not in seen:
                    seen.add(question_key(probe["instruction"]))
                    probes.append(probe)
        unanswered = [p for p in probes if not str(p.get("output") or "").strip()]
        if unanswered:
            answered = iter(teacher_for(self.cfg, self.client(r), self.task).answer(unanswered))
            probes = [next(answered) if not str(p.get("output") or "").strip() else p for p in probes]
        return [p for p in probes if str(p.get("output") or "").strip()]

    def log(self, r: int, phases: dict[str, dict]) -> Out:
        """Round metrics to metrics.jsonl and W&B, tables of failures and new items, summary.json."""
        test, probes = self.files.rows(r, F.EVAL_TEST), self.files.rows(r, F.EVAL_PROBE)
        items = self.files.rows(r, F.ITEMS)
        metrics = round_metrics(test, probes, items, len(self.files.pool(r)), phases)
        client = self.client(r)
        if client is not None:
            metrics.update(usage_metrics(client, r))
        synthetic = [i for i in items if i.get("source") == "synthetic"]
        ifds = [float(i["ifd"]) for i in synthetic if i.get("ifd") is not None]
        tracker = self._tracker()

        def send() -> None:
            tracker.log(metrics, round=r)
            tracker.log_table("test/failures", [f for f in test if not f["correct"]][:200], round=r)
            if synthetic:
                tracker.log_table("synth/items", synthetic[:500], round=r)
                why = [{"reason": k, "items": v} for k, v in reasons.most_common()]
                if why:
                    tracker.log_table("synth/drop_reasons", why, round=r)
            if ifds:
                tracker.log_histogram("ifd/hist", ifds, round=r)
            kept = [i for i in items if i.get("kept", True)]  # the seed (round 0), then each round's additions
            tracker.log_artifact(
                f"{self.files.root.name}-items",
                "dataset",
                rows=kept,
                aliases=[f"round-{r}"],
                metadata={"round": r, "kept": len(kept), "written": len(items)},
            )

        times = {k: float(v.get("stats", {}).get("seconds", 0.0)) for k, v in phases.items()}
        drops = Counter(drop_plugin(i) for i in synthetic if not i.get("kept"))
        reasons = Counter(drop_reason_key(i) for i in synthetic if not i.get("kept"))
        summary = {"round": r, "metrics": metrics, "times": times, "drops": dict(drops), "reasons": dict(reasons)}
        return Out(files={self.files.at(r, F.SUMMARY): summary}, effects=[send])


def round_metrics(
    test: Sequence[Record], probes: Sequence[Record], items: Sequence[Record], pool: int, phases: dict[str, dict]
) -> dict[str, float]:
    """Accuracy overall, per skill and per point; what synthesis wrote, kept and dropped by whom; IFD; times."""
    metrics: dict[str, float] = {**accuracy_metrics(test, "test"), **accuracy_metrics(probes, "probe")}
    for point, acc in accuracy_by(test, "knowledge_point").items():
        metrics[f"test/point/{point}"] = acc
    synthetic = [i for i in items if i.get("source") == "synthetic"]
    kept_items = [i for i in synthetic if i.get("kept")]
    drops = Counter(drop_plugin(i) for i in synthetic if not i.get("kept"))
    ifds = [float(i["ifd"]) for i in synthetic if i.get("ifd") is not None]
    metrics.update(
        {
            "synth/candidates": len(synthetic),
            "synth/kept": len(kept_items),
            "synth/dropped": len(synthetic) - len(kept_items),
            **{f"synth/dropped/{k.replace(' ', '_')}": v for k, v in drops.items()},
            "pool/size": pool,
        }
    )
    for label in sorted({str(i["mix"]) for i in synthetic if i.get("mix")}):  # a mix: each part's own counts
        part = [i for i in synthetic if i.get("mix") == label]
        metrics[f"synth/mix/{label}/candidates"] = len(part)
        metrics[f"synth/mix/{label}/kept"] = sum(bool(i.get("kept")) for i in part)
    if ifds:
        metrics.update({"ifd/mean": statistics.fmean(ifds), "ifd/median": statistics.median(ifds)})
    times = {k: float(v.get("stats", {}).get("seconds", 0.0)) for k, v in phases.items()}
    compute = sum(float(v.get("stats", {}).get("compute_seconds", 0.0)) for v in phases.values())
    wall = sum(times.values())
    for entry in phases.values():  # what plugins reported (an archive's QD-score and coverage)
        metrics.update(entry.get("stats", {}).get("metrics", {}))
    metrics.update({f"time/{k}": v for k, v in times.items()})
    metrics["time/round"] = wall
    metrics["time/orchestration_share"] = max(0.0, wall - compute) / wall if wall else 0.0
    return metrics


def shares_of(budget: int, shares: Sequence[float]) -> list[int]:
    """`budget` split by `shares` (summing to 1) into whole items that add up to it (largest remainders)."""
    exact = [budget * s for s in shares]
    whole = [int(x) for x in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(exact[i] - whole[i]), i))
    for i in by_remainder[: budget - sum(whole)]:
        whole[i] += 1
    return whole
