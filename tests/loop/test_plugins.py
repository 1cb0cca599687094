"""The plugin architecture end to end: every strategy the docs name runs a round of the real loop (a scripted
chat model where one is needed), a plugin registered here (a stateful plan, a refiner) runs a round with no
edit to loop/, a crash in the middle of a round resumes its state exactly, a combination that cannot run
fails before a run directory exists, and loop/ never dispatches on a plugin's name."""

from __future__ import annotations

import ast
import json
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from agents.llm.client import LLMClient
from agents.llm.scripted import ScriptedBackend
from agents.llm.types import ChatRequest
from agents.proposal import Proposal
from agents.tasks.world import sample_item, solve
from core import plugins
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record
from loop.config import ConfigError, config_from_dict, dump_config, load_config
from loop.runner import Runner, resume_run
from loop.store import RunStore
from tests.helpers import POINTS, TINY, rows

ROOT = Path(__file__).resolve().parents[2]
CHAT = ["teacher.kind=llm", "teacher.llm.backend=openai", "teacher.llm.model=scripted"]
CHAT += ["teacher.llm.base_url=http://127.0.0.1:9/v1", "teacher.llm.max_tries=2", "synthesis.writer=chat"]
CHAT += ["synthesis.curate=null"]  # the defaults for a chat run: verify, then the model's 1-5 rating
LOCAL = ["teacher.llm.backend=transformers"]  # raw completions need a local model (the client is injected)


# -- a scripted chat model that plays every agent over the task world --------------------------------
def _world_question(req: ChatRequest) -> tuple[str, str]:
    rng = random.Random(json.dumps(req.messages) + str(req.sampling.seed))
    return sample_item(rng, rng.choice(POINTS), 2)


def _one(req: ChatRequest) -> str:
    q, a = _world_question(req)
    return json.dumps({"question": q, "answer": a})


def _many(req: ChatRequest) -> str:
    n = int(re.search(r"[Ww]rite (\d+)", req.messages[-1]["content"])[1])  # type: ignore[index]
    rng = random.Random(json.dumps(req.messages) + str(req.sampling.seed))
    rows = [sample_item(rng, rng.choice(POINTS), 2) for _ in range(n)]
    return "Here they are:\n" + json.dumps([{"question": q, "answer": a} for q, a in rows])


def _prompt(req: ChatRequest) -> str:
    return json.dumps({"key_point": "a harder case", "prompt": _world_question(req)[0]})


def world_chat() -> ScriptedBackend:
    """Questioner, teacher, rater and Examiner replies over the task world (the oracle answers)."""
    count = iter(range(10_000))
    samples = iter(range(10_000))  # raw completions: each sample of a request differs

    def sampled(req: ChatRequest) -> str:
        return sample_item(random.Random(f"{req.prompt}:{req.sampling.seed}:{next(samples)}"), POINTS[1], 2)[0]

    def reflected(req: ChatRequest) -> str:  # selective reflection's instruction reflection: a world question
        q = sampled(req)
        return f"Too easy.\n[New Instruction] {q} [End]\n[New Answer] {solve(q)} [End]"

    def better(req: ChatRequest) -> str:  # ... and its response reflection: the oracle's answer
        question = req.messages[-1]["content"].split("[Instruction]\n", 1)[1].split("\n\n", 1)[0]
        return f"Terse.\n[Better Answer] {solve(question)} [End]"

    return ScriptedBackend(
        [
            ("Rewrite the question below", lambda r: f"New question: {_world_question(r)[0]}"),  # rainbow_chat
            ("Worse: 1", lambda r: f"Worse: {1 + len(r.messages[-1]['content']) % 2}"),  # its pairwise judge
            (r"\[New Instruction\] your instruction", reflected),
            (r"\[Better Answer\] your answer", better),
            (r"<\|im_start\|>user\n$", sampled),  # magpie: a user turn
            (r"Prompt#:$", lambda r: f"#Rewritten Prompt#:\n{sampled(r)}"),  # evol_instruct
            ("You are an instruction rewriter", lambda r: f"Step 1: #Finally Rewritten Instruction#\n{sampled(r)}"),
            ("expert at analysing how instructions evolve", "### PASSED"),  # auto_evol_instruct's analyser
            (
                "You improve a method",
                "```Optimized Method\nStep 1: a\nStep 2: write the #Finally Rewritten Instruction#\n```",
            ),
            ("Think of a list of new tasks", lambda r: f" {sampled(r)}\n10. {sampled(r)}\n11. Hi"),  # self_instruct
            ("The student was given this question", _one),  # llm2llm
            ("STUDENT'S WRONG ANSWER", _many),  # instructors
            (r"Write \d+ new question", _many),  # the chat writer's per-point prompt
            ("aimed at a lower score|This task is to write test cases", _prompt),  # autodetect
            ("propose one new test point", lambda r: json.dumps({"name": f"Point {next(count)}", "description": "d"})),
            ("Judge whether the new test point", "[[Yes]]"),
            ("Score: <rating>", "Clear and correct.\nScore: 5"),
            (".", lambda r: solve(r.messages[-1]["content"]) or "I do not know"),  # the teacher
        ]
    )


@pytest.fixture(scope="module")
def round0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Round 0 of a small chat run, made once; each test copies it (round 0 does not read the strategy)."""
    run = tmp_path_factory.mktemp("round0") / "run"
    cfg = load_config(overrides=[*TINY, *CHAT, "rounds.max_rounds=0", f"run_dir={run}"])
    store = RunStore(run)
    store.create(dump_config(cfg), cfg.name)
    Runner(cfg, store, client=LLMClient(world_chat(), run / "calls.sqlite")).execute()
    return run


def _round1(round0: Path, tmp: Path, overrides: Sequence[str], backend: ScriptedBackend | None = None) -> Path:
    run = tmp / "run"
    shutil.copytree(round0, run)
    cfg = load_config(overrides=[*TINY, *CHAT, "rounds.max_rounds=1", *overrides])
    store = RunStore(run)
    (run / "config.yaml").write_text(dump_config(cfg))
    Runner(cfg, store, client=LLMClient(backend or world_chat(), run / "calls.sqlite")).execute()
    return run


@pytest.mark.parametrize(
    ("overrides", "strategy"),
    [
        (["synthesis.plan={name: rainbow_chat, iterations: 2, mutations: 4}"], "rainbow_chat"),
        (["synthesis.plan=llm2llm"], "llm2llm"),
        (["synthesis.plan={name: instructors, contrast: true}"], "instructors"),
        (["synthesis.plan=autodetect", "examiner=autodetect"], "autodetect"),
        (["synthesis.plan=weakness"], "weakness"),  # a weighing plan with the chat writer
        (["synthesis.plan=frontier", "synthesis.writer=generator"], "frontier"),  # the world writes, the model answers
        (["synthesis.plan=random", "synthesis.curate=[verify]"], "random"),
        (["synthesis.plan=weakness", "synthesis.writer=magpie", *LOCAL], "weakness"),
        (["synthesis.plan=llm2llm", "synthesis.writer={name: self_instruct, rouge_max: 0.95}", *LOCAL], "llm2llm"),
        (
            ["synthesis.plan=weakness", "synthesis.writer=evol_instruct", "synthesis.curate=[verify, eliminate]"],
            "weakness",
        ),
        (["synthesis.plan=llm2llm", "synthesis.writer={name: auto_evol_instruct, dev_size: 2, epochs: 1}"], "llm2llm"),
        (
            [
                "synthesis.plan=weakness",
                "synthesis.writer=generator",
                "synthesis.refine=[reflection]",
                "synthesis.select=[{name: selective_reflection, keep_original: true}, decontaminate, dedup]",
            ],
            "weakness",
        ),
    ],
    ids=[
        "rainbow_chat",
        "llm2llm",
        "instructors",
        "autodetect",
        "weakness",
        "frontier",
        "random",
        "magpie",
        "self_instruct",
        "evol",
        "auto_evol",
        "selective_reflection",
    ],  # fmt: skip
)
def test_every_strategy_runs_a_round_of_the_loop(
    round0: Path, tmp_path: Path, overrides: list[str], strategy: str
) -> None:
    run = _round1(round0, tmp_path, overrides)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["phases"]["round_000/train"].get("scheme") == 2  # round 0 was not redone
    items = rows(run / "round_001" / "items.jsonl")
    assert items and all(i["strategy"] == strategy and i["source"] == "synthetic" for i in items)
    assert all(i["kept"] == (i["drop_reason"] is None) for i in items)
    assert any(i["kept"] for i in items), [i["drop_reason"] for i in items]
    if "auto_evol_instruct" in " ".join(overrides):  # the optimised method is kept for the next round
        state = json.loads((run / "round_001" / "state" / "writer-auto_evol_instruct.json").read_text())
        assert state["history"][0]["round"] == 1 and "Finally Rewritten Instruction" in state["method"]
    if strategy == "rainbow_chat":  # the archive was kept, its elites probed (answered by the teacher) and written from
        state = json.loads((run / "round_001" / "state" / "plan-rainbow_chat.json").read_text())
        assert state["elites"] and state["history"][0]["judge_calls"] % 2 == 0
        probes = [p for p in rows(run / "round_001" / "eval_probe.jsonl") if p.get("source") == "archive"]
        assert probes and all(p["output"] for p in probes)
        assert {i["parent_id"] for i in items if i["instruction"]} <= {row["item"]["id"] for row in state["elites"]}
    if "synthesis.refine=[reflection]" in overrides:  # the student chose among the teacher's reflections
        chosen = [i for i in items if i["kept"]]
        assert chosen and all(i["reflected"] in ("q", "qa", "a", "ori") and i["reflection_scores"] for i in chosen)
        assert any(i["reflected"] != "ori" for i in chosen) or any(
            str(i["drop_reason"]).startswith("selective_reflection:") for i in items
        )
    for row in items:  # every kept answer is the oracle's
        if row["kept"]:
            assert solve(str(row["instruction"])) in (None, row["output"])
    written = {i.get("writer") for i in items if i["instruction"]}
    named = [
        re.sub(r"^\{name: (\w+).*", r"\1", o.split("=", 1)[1]) for o in overrides if o.startswith("synthesis.writer=")
    ]
    assert written == {named[-1] if named else "chat"}
    if "examiner=autodetect" in overrides:
        profile = json.loads((run / "round_001" / "profile.json").read_text())
        assert [r["kind"] for r in profile["refinements"]] == ["new_point"]
        assert any(str(i["parent_id"]).startswith("point_") for i in items)  # the new point was searched
        probes = [p for p in rows(run / "round_001" / "eval_probe.jsonl") if p["knowledge_point"] == "point_0"]
        assert len(probes) == 5 and all(p["written_by"] == "examiner" and p["output"] for p in probes)  # and probed


class _Recording:
    """A chat backend that keeps every request it was sent, then lets the scripted world chat answer."""

    def __init__(self, inner: ScriptedBackend) -> None:
        self.inner, self.kind, self.model, self.seen = inner, inner.kind, inner.model, []

    def chat(self, requests: Sequence[ChatRequest]) -> list:
        self.seen += list(requests)
        return self.inner.chat(requests)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("plan", ["llm2llm", "weakness"])
def test_every_writer_request_of_a_round_has_its_own_seed(round0: Path, tmp_path: Path, plan: str) -> None:
    # vLLM returns identical samples for identical prompts under one seed: no two requests may share one.
    backend = _Recording(world_chat())
    _round1(round0, tmp_path, [f"synthesis.plan={plan}"], backend)  # type: ignore[arg-type]
    asked = [r for r in backend.seen if r.agent == "questioner"]
    assert len(asked) > 1 and len({r.sampling.seed for r in asked}) == len(asked)


def test_a_mix_gives_each_part_its_share_and_its_items_carry_it(round0: Path, tmp_path: Path) -> None:
    mix = "synthesis.mix=[{share: 0.75, writer: generator}, {share: 0.25, plan: llm2llm, label: failures}]"
    run = _round1(round0, tmp_path, ["synthesis.plan=weakness", mix])
    items = [i for i in rows(run / "round_001" / "items.jsonl") if i["source"] == "synthetic"]
    by_part = {label: [i for i in items if i.get("mix") == label] for label in ("weakness+generator", "failures")}
    assert len(by_part["weakness+generator"]) == 6 and 1 <= len(by_part["failures"]) <= 2 + 2  # 8 x 0.75 / 0.25
    assert {i["writer"] for i in by_part["weakness+generator"] if i["instruction"]} == {"generator"}
    assert {i["strategy"] for i in by_part["failures"]} == {"llm2llm"} and all(i.get("mix") for i in items)
    assert len({i["id"] for i in items}) == len(items)
    (metrics,) = [m for m in rows(run / "metrics.jsonl") if m.get("round") == 1 and "test/accuracy" in m]
    for label, part in by_part.items():
        assert metrics[f"synth/mix/{label}/candidates"] == len(part)
        assert metrics[f"synth/mix/{label}/kept"] == sum(i["kept"] for i in part)


def test_budget_shares_are_whole_items_that_add_up() -> None:
    from loop.stages import shares_of

    assert shares_of(60, [0.5, 0.3, 0.2]) == [30, 18, 12]
    assert shares_of(10, [1 / 3] * 3) == [4, 3, 3]
    assert shares_of(7, [0.5, 0.5]) == [4, 3] and shares_of(0, [0.6, 0.4]) == [0, 0]


def test_a_proxy_model_scores_ifd_in_place_of_the_student(round0: Path, tmp_path: Path) -> None:
    from trainers.ifd import score_ifd
    from trainers.tiny import load_student

    proxy = round0 / "base"  # the untrained base: a model other than round 0's student
    run = _round1(round0, tmp_path, ["synthesis.plan=weakness", f"ifd.model={proxy}"])
    scored = [i for i in rows(run / "round_001" / "items.jsonl") if i.get("loss_cond") is not None]
    assert scored
    s = load_config(run / "config.yaml").student
    model, tokenizer = load_student(proxy)
    want = score_ifd(model, tokenizer, scored, template=s.template, max_length=s.max_length, batch_size=8)
    assert [i["loss_cond"] for i in scored] == pytest.approx([s.loss_cond for s in want], rel=1e-5)
    student, tokenizer = load_student(round0 / "round_000" / "model")
    other = score_ifd(student, tokenizer, scored, template=s.template, max_length=s.max_length, batch_size=8)
    assert [i["loss_cond"] for i in scored] != pytest.approx([s.loss_cond for s in other], rel=1e-3)


def test_combinations_that_cannot_run_fail_before_a_run_directory_exists(tmp_path: Path) -> None:
    for overrides, needle in [
        (["synthesis.plan=instructors"], "synthesis.plan 'instructors' needs a chat model (set teacher.kind=llm)"),
        (["synthesis.strategy=autodetect"], "needs a chat model"),  # the old key, mapped
        (["synthesis.writer=chat"], "synthesis.writer 'chat' needs a chat model"),
        (["examiner=autodetect"], "examiner 'autodetect' needs a chat model"),
        (["synthesis.curate=[verify, quality]"], "synthesis.curate[1] 'quality' needs a chat model"),
        (["teacher.answers=oracle_first"], "it needs task.name=world and teacher.kind=llm"),
        (
            ["teacher.kind=llm", "teacher.llm.backend=openai", "teacher.llm.model=m", "synthesis.writer=magpie"],
            "synthesis.writer 'magpie' needs a local chat model that continues raw text",
        ),
    ]:
        run = tmp_path / "never"
        done = subprocess.run(
            [sys.executable, "-m", "loop.cli", "run", *overrides, f"run_dir={run}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert done.returncode == 2 and needle in done.stderr, done.stderr[-2000:]
        assert "Traceback" not in done.stderr and not run.exists()


# -- plugins registered here, with no edit to loop/ ---------------------------------------------------
class EchoArchiveConfig(PluginConfig):
    """A test plan: uniform over the taxonomy, remembering the rounds it planned."""

    crash_in_round: int | None = None


class Crash(RuntimeError):
    """A simulated crash in the middle of a round."""


@register
class EchoArchive(Plugin):
    """Stateful: its state lists every round it planned; a crash mid-round must not change what it saw."""

    name = "test_echo_archive"
    kind = "plan"
    Config = EchoArchiveConfig
    reads = ("taxonomy", "state")
    config: EchoArchiveConfig

    def load_state(self, state: dict | None) -> None:
        self.rounds = list((state or {}).get("rounds", []))

    def propose(self, inputs: Inputs, budget: int, round: int, rng: random.Random) -> Proposal:
        if self.config.crash_in_round == round and not EchoArchive.crashed:
            EchoArchive.crashed = True
            raise Crash(f"crash in round {round}")
        self.rounds.append(round)
        keys = [(str(p["id"]), None, self.parts.difficulty) for p in inputs["taxonomy"]]
        return Proposal(weights=dict.fromkeys(keys, 1.0), reasons=dict.fromkeys(keys, f"seen {self.rounds}"))

    def state(self) -> dict | None:
        return {"rounds": self.rounds}

    crashed = False


class MarkConfig(PluginConfig):
    """A test refiner: tags every answered item."""

    tag: str = "refined"


@register
class Mark(Plugin):
    """Adds `refined_by` to each item (and trims its answer)."""

    name = "test_mark"
    kind = "refiner"
    Config = MarkConfig
    config: MarkConfig

    def refine(self, items: Sequence[Record], inputs: Inputs) -> list[Record]:
        return [{**i, "output": str(i.get("output") or "").strip(), "refined_by": self.config.tag} for i in items]


def test_a_plugin_from_the_test_folder_runs_and_its_state_resumes_exactly(tmp_path: Path) -> None:
    world = [*TINY, "rounds.max_rounds=2", "synthesis.writer=generator", "synthesis.refine=[{name: test_mark}]"]
    plan = "synthesis.plan={name: test_echo_archive, crash_in_round: 2}"
    cfg = load_config(overrides=[*world, plan, f"run_dir={tmp_path / 'run'}"])
    run = Path(str(cfg.run_dir))
    store = RunStore(run)
    store.create(dump_config(cfg), cfg.name)
    EchoArchive.crashed = False
    with pytest.raises(Crash):
        Runner(cfg, store).execute()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["phases"]["round_002/question"]["status"] == "running"
    assert json.loads((run / "round_001/state/plan-test_echo_archive.json").read_text()) == {"rounds": [1]}
    resume_run(run)  # the config saved in the run directory names the plugin; it is registered here
    assert json.loads((run / "round_002/state/plan-test_echo_archive.json").read_text()) == {"rounds": [1, 2]}
    items = rows(run / "round_002" / "items.jsonl")
    assert {i["why"] for i in items if i["instruction"]} == {"seen [1, 2]"}
    assert all(i["refined_by"] == "refined" for i in items if i["instruction"])
    assert json.loads((run / "manifest.json").read_text())["phases"]["round_002/refine"]["status"] == "done"


def test_a_plugin_reading_what_it_did_not_declare_is_stopped() -> None:
    cls = plugins.get("plan", "weakness")
    inputs = Inputs(cls, {"pool": list, "profile": dict})
    with pytest.raises(plugins.PluginError, match="reads 'pool' but does not declare it"):
        inputs["pool"]


# -- loop/ never dispatches on a plugin's name ----------------------------------------------------------
def _dispatches(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) wherever a plugin name is compared with (==, in, a match case) or handed to the registry."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
        elif isinstance(node, ast.match_case):
            parts = [node.pattern]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            registry = isinstance(node.func.value, ast.Name) and node.func.value.id == "plugins"
            parts = list(node.args) if registry else []
        else:
            continue
        for part in parts:
            for sub in part.elts if isinstance(part, ast.Tuple | ast.List | ast.Set) else [part]:
                value = getattr(sub, "value", None)
                if isinstance(value, str) and value in names:
                    found.append((sub.lineno, value))
    return found


def test_loop_never_dispatches_on_a_plugin_name() -> None:
    names = {name for kind in plugins.KINDS for name in plugins.plugins(kind)}
    planted = 'if s.plan.name == "frontier":\n    pass\nok = x in ("llm2llm", "y")\nc = plugins.get("plan", "random")\n'
    assert [n for _, n in _dispatches(planted, names)] == ["frontier", "llm2llm", "random"]  # the check can fail
    # loop/legacy.py maps the old config keys (which named strategies) onto plugins: the one place allowed.
    found = [
        f"{path.name}:{line}: {name!r}"
        for path in sorted((ROOT / "loop").glob("*.py"))
        if path.name != "legacy.py"
        for line, name in _dispatches(path.read_text(), names)
    ]
    assert not found, found


def test_a_run_directory_made_before_the_redesign_resumes_where_it_stopped(tmp_path: Path) -> None:
    fixture = ROOT / "tests/loop/data/legacy_run_v1"
    expected = json.loads((ROOT / "tests/loop/data/legacy_run_v1.expected.json").read_text())
    run = tmp_path / "legacy"
    shutil.copytree(fixture, run)
    before = json.loads((run / "manifest.json").read_text())["phases"]
    with pytest.warns(FutureWarning, match="synthesis.strategy=weakness -> synthesis.plan"):
        resume_run(run)
    after = json.loads((run / "manifest.json").read_text())["phases"]
    done = [k for k, v in before.items() if v["status"] == "done"]
    assert done and all(after[k]["started"] == before[k]["started"] for k in done), "a finished phase was redone"
    assert after["round_001/filter"]["status"] == "done" and after["round_002/log"]["status"] == "done"
    items = [[i["id"], i["kept"], i["instruction"]] for k in (1, 2) for i in rows(run / f"round_{k:03d}/items.jsonl")]
    assert items == expected["items"], "the resumed rounds differ from what the code that made the folder gives"
    metrics = [m["test/accuracy"] for m in rows(run / "metrics.jsonl") if "test/accuracy" in m]
    assert metrics == expected["test_accuracy"]
    cfg = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()), "legacy")
    assert cfg.synthesis.plan.name == "weakness" and cfg.synthesis.writer.name == "generator"  # type: ignore[union-attr]


def test_old_config_keys_map_onto_the_plugins_that_do_that_job() -> None:
    with pytest.warns(FutureWarning):
        cfg = load_config(
            ROOT / "configs/demo.yaml",
            [
                "synthesis.strategy=frontier",
                "synthesis.park_after=7",
                "synthesis.refine=false",
                "filters={dedup: false, decontamination: ngram, ngram: 9}",
                "ifd={enabled: true, threshold: 0.9, reverse: true, batch_size: 4}",
            ],
        )
    s = cfg.synthesis
    assert (s.plan.name, s.plan.park_after, s.writer.name) == ("frontier", 7, "generator")  # type: ignore[union-attr]
    assert cfg.examiner.refine is False  # type: ignore[union-attr]
    assert [c.name for c in s.select] == ["decontaminate", "ifd"]  # type: ignore[union-attr]
    assert (s.select[0].method, s.select[0].ngram, s.select[1].threshold, s.select[1].reverse) == (
        "ngram",
        9,
        0.9,
        True,
    )  # type: ignore[index,union-attr]
    assert cfg.ifd.batch_size == 4
    with pytest.raises(ConfigError, match="filters.skip_malformed was never read"):
        load_config(overrides=["filters.skip_malformed=true"])


def test_the_retired_tiny_teacher_maps_onto_smollm2() -> None:
    old = [
        "teacher.kind=llm",
        "teacher.llm.model=tiny",
        "teacher.llm.tiny_rows_per_kind=40",
        "teacher.llm.tiny_epochs=3",
    ]
    with pytest.warns(FutureWarning, match="tiny teacher is retired"):
        cfg = load_config(ROOT / "configs/demo_llm.yaml", old)
    assert cfg.teacher.llm.model == "smollm2-135m-instruct"
    assert "tiny_epochs" not in cfg.teacher.llm.model_dump()
