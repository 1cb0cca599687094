"""Secrets and untrusted text: a planted API key appears nowhere a run writes, even when the server echoes it
back in an error; model output is never run as code and never rendered as a template."""

from __future__ import annotations

import ast
from pathlib import Path

import jinja2
import pytest
from jinja2 import meta

from agents.llm.backends import LLMCallError, OpenAIBackend
from agents.llm.prompts import PromptError, _environment, render, template_names
from agents.llm.types import ChatRequest, Sampling
from core import secrets
from loop.tracking import find_wandb_files, read_wandb_file
from tests.agents.llm.test_openai_backend import KEY_ENV, FakeOpenAI, error
from tests.helpers import LLM_SMALL, start

ROOT = Path(__file__).resolve().parents[2]
PLANTED = "sk-gaploop-planted-0123456789abcdefXYZ"


def _files_holding(root: Path, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_a_planted_key_appears_in_no_file_of_a_run_nor_in_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeOpenAI()
    # The first call is refused by a server that quotes the key back, as some do in their 401 bodies.
    fake.script = [error(401, f"Incorrect API key provided: {PLANTED}. You can find your API key at ...")]
    monkeypatch.setenv(KEY_ENV, PLANTED)
    run, log = tmp_path / "run", tmp_path / "log.txt"
    log.write_text("")
    args = [a for a in LLM_SMALL if not a.startswith(("teacher.llm.backend", "tracking.wandb_mode"))]
    args += ["teacher.llm.backend=openai", f"teacher.llm.base_url={fake.url}", "teacher.llm.model=served"]
    args += [f"teacher.llm.api_key_env={KEY_ENV}", "tracking.wandb_mode=offline", "training.max_steps=20"]
    args += [f"run_dir={run}"]
    try:
        assert start(["run", *args], None, log).wait(timeout=900) != 0
        failed = log.read_text()
        # One message naming the call and the server's words, the key masked; no traceback; how to go on.
        assert (
            "LLMCallError: chat call to" in failed
            and "HTTP 401: Error code: 401 - Incorrect API key provided: ***." in failed
        )
        assert "Traceback" not in failed and f"gaploop resume {run}" in failed, failed[-3000:]
        assert start(["resume", str(run)], None, log).wait(timeout=900) == 0, log.read_text()[-3000:]
    finally:
        fake.close()
    assert fake.auth and all(a == f"Bearer {PLANTED}" for a in fake.auth)  # the key was really sent
    assert (run / "llm_cache.sqlite").exists() and list(run.rglob("*.wandb")), "the cache and W&B files exist"
    assert _files_holding(tmp_path, PLANTED.encode()) == []  # run dir, W&B, cache, the captured output
    # W&B (offline, two sessions): each round's kept items as a dataset artifact, the final student as a model.
    artifacts = [a for f in find_wandb_files(run) for a in read_wandb_file(f)["artifacts"]]
    items = {alias for a in artifacts if a["name"] == "run-items" for alias in a["aliases"]}
    assert {"round-0", "round-1"} <= items, artifacts
    [student] = [a for a in artifacts if a["name"] == "run-student"]
    assert student["type"] == "model" and "final" in student["aliases"] and student["references"]


def test_redact_masks_registered_values_and_the_well_known_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijkl")
    monkeypatch.setenv("WANDB_API_KEY", "short")  # too short to mask safely: left alone
    secrets.register("sk-registered-0001")
    secrets.register("EMPTY")  # the dummy loopback key is no secret
    text = "hf_abcdefghijkl sk-registered-0001 sk-registered-0001x short EMPTY"
    assert secrets.redact(text) == "*** *** ***x short EMPTY"
    # Children that train, answer or score get no chat key; a hub token stays (a gated model may need it).
    env = {"MY_KEY": "sk-registered-0001", "HF_TOKEN": "hf_abcdefghijkl", "PATH": "/bin"}
    assert secrets.without_secrets(env) == {"HF_TOKEN": "hf_abcdefghijkl", "PATH": "/bin"}


def test_a_key_quoted_back_by_the_server_is_masked_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOpenAI()
    monkeypatch.setenv(KEY_ENV, PLANTED)
    fake.script = [error(401, f"bad key {PLANTED}")] + [error(503, f"overloaded, key {PLANTED}")] * 2
    chat = OpenAIBackend("served", base_url=fake.url, api_key_env=KEY_ENV, backoff=0.01, max_retries=1)
    try:
        for expected in ("HTTP 401: Error code: 401 - bad key ***", "after 2 attempts; last error InternalServerError"):
            with pytest.raises(LLMCallError) as err:
                chat.chat([ChatRequest([{"role": "user", "content": "q"}], Sampling(), agent="teacher")])
            assert expected in str(err.value) and PLANTED not in str(err.value)
    finally:
        fake.close()


def test_model_output_is_rendered_as_data_never_as_a_template() -> None:
    """Every prompt whose variables are all text, given template syntax as each of them, shows it verbatim."""
    payload = "{{ 7 * 7 }} {% for x in [1, 2] %}X{% endfor %} {# c #} ${HOME}"
    env = _environment()
    checked = []
    for name in template_names():
        variables = meta.find_undeclared_variables(env.parse(env.loader.get_source(env, name)[0]))
        try:
            text = render(name, **dict.fromkeys(variables, payload))
        except (PromptError, jinja2.UndefinedError, TypeError, ValueError):
            continue  # a variable that must be a list or a mapping: not text a model wrote
        assert "49" not in text and "XX" not in text, (name, text)  # nothing given was evaluated
        if payload in text:  # (a variable may only switch a part on or off)
            checked.append(name)
    assert {"realign_rewrite", "reflect_response", "reflect_instruction", "judge"} <= set(checked), checked


def test_no_code_path_evaluates_or_executes_text() -> None:
    """No eval/exec/compile of strings, no shell, no pickle, in any module the project ships."""
    banned_names = {"eval", "exec", "compile", "__import__"}
    found = []
    for path in sorted(p for d in ("agents", "core", "loop", "trainers") for p in (ROOT / d).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f"{ast.unparse(f)}" if isinstance(f, ast.Attribute) else ""
            shell = any(
                k.arg == "shell" and not (isinstance(k.value, ast.Constant) and not k.value.value)
                for k in node.keywords
            )
            if name in banned_names or name in {"os.system", "os.popen", "pickle.loads", "pickle.load"} or shell:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert found == []
