"""Every shipped config loads and validates; the DeepSpeed JSON its training phase would build is accepted by
DeepSpeed's own config parser at the world size it is meant for; the launch script's dry run prints the
commands it would run and refuses bad arguments. The GPU recipes cannot run here; this is how they are checked."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from core.children import free_port
from loop.config import CONFIG_DIR, config_from_dict, dump_config, load_config
from loop.student import sft_job
from trainers.sft import build_ds_config

REPO = CONFIG_DIR.parent
CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
STRATEGIES = sorted(p.stem for p in (CONFIG_DIR / "strategies").glob("*.yaml"))
# Hidden sizes of the students the recipes name, from their HF config.json files (the hub is out of reach).
HIDDEN = {
    "meta-llama/Llama-3.2-1B-Instruct": 2048,
    "meta-llama/Llama-3.1-8B-Instruct": 4096,
    "smollm2-135m-instruct": 576,
}
# The GPUs each recipe is written for (its comments say so); LLM2LLM's effective batch is 128 there.
WORLD = {"gsm8k_llama3.2-1b": 4, "gsm8k_llama3.1-8b_zero3": 16, "sst2": 1, "trec": 1, "snips": 1, "casehold": 1}


def test_the_shipped_configs_are_the_ones_checked_here() -> None:
    assert {"demo", "demo_llm", "gsm8k_llama3.2-1b", "gsm8k_llama3.1-8b_zero3"} <= set(CONFIGS)
    assert set(WORLD) <= set(CONFIGS)


@pytest.mark.parametrize("name", STRATEGIES)
def test_each_strategy_config_names_its_plugin_and_lets_the_world_answer(name: str) -> None:
    cfg = load_config(CONFIG_DIR / "strategies" / f"{name}.yaml")
    s = cfg.synthesis
    named = {s.plan.name, s.writer.name, *(c.name for c in s.refine), *(c.name for c in s.select or [])}  # type: ignore[union-attr]
    # on the world task its code answers: the world teacher, or a chat teacher with answers oracle_first
    world_answers = cfg.teacher.kind == "world" or cfg.teacher.answers == "oracle_first"
    if s.mix:  # a mix names its parts' plugins
        named |= {n for part in s.mix for n in (part.plan.name, part.writer.name)}  # type: ignore[union-attr]
        assert name == "mix" and len(s.mix) >= 2 and {"generator", "self_instruct", "magpie"} <= named
    else:
        assert name in named
    assert world_answers or cfg.task.name != "world"
    assert config_from_dict(yaml.safe_load(dump_config(cfg)), f"{name} resolved") == cfg


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_and_deepspeed_accepts_its_training_json(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepspeed.runtime import config as ds_config

    cfg = load_config(CONFIG_DIR / f"{name}.yaml")
    # Resolved as the run directory stores it (config.yaml), it loads back the same, from any directory.
    monkeypatch.chdir(REPO.parent)
    assert config_from_dict(yaml.safe_load(dump_config(cfg)), f"{name} resolved") == cfg
    hidden = cfg.student.tiny.hidden_size if cfg.student.model == "tiny" else HIDDEN[cfg.student.model]
    world = WORLD.get(name, 1)
    job = sft_job(cfg, Path("base"), Path("train.jsonl"), Path("out"))
    config = build_ds_config(job, world, hidden)
    # DeepSpeed reads the world size from torch.distributed, which a test does not start.
    monkeypatch.setattr(ds_config.dist, "get_rank", lambda *a, **k: 0)
    monkeypatch.setattr(ds_config.dist, "get_world_size", lambda *a, **k: world)
    parsed = ds_config.DeepSpeedConfig(config)
    assert parsed.zero_optimization_stage == cfg.training.zero_stage
    assert parsed.train_batch_size == cfg.training.micro_batch_size * cfg.training.grad_accum * world
    if name in WORLD:  # the GPU recipes: LLM2LLM's effective batch, bf16
        assert parsed.train_batch_size == 128 and parsed.bfloat16_config.enabled
    if cfg.training.zero_stage == 3:
        assert parsed.zero_config.gather_16bit_weights_on_model_save  # a loadable model folder is saved


def test_deepspeeds_parser_is_a_real_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from deepspeed.runtime import config as ds_config

    cfg = load_config(CONFIG_DIR / "gsm8k_llama3.2-1b.yaml")
    config = build_ds_config(sft_job(cfg, Path("b"), Path("t"), Path("o")), 4, 2048)
    monkeypatch.setattr(ds_config.dist, "get_rank", lambda *a, **k: 0)
    monkeypatch.setattr(ds_config.dist, "get_world_size", lambda *a, **k: 8)  # launched on 8, written for 4
    with pytest.raises(AssertionError, match="train_batch_size is not equal"):
        ds_config.DeepSpeedConfig(config)
    config["zero_optimization"]["no_such_option"] = 1
    monkeypatch.setattr(ds_config.dist, "get_world_size", lambda *a, **k: 4)
    with pytest.raises(Exception, match="no_such_option"):
        ds_config.DeepSpeedConfig(config)


def test_deepspeeds_launcher_reads_the_training_command_over_the_recipes_hostfile(tmp_path: Path) -> None:
    from deepspeed.launcher import runner

    from trainers.sft import _child_command

    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node1 slots=8\nnode2 slots=8\n")  # docs/gpu.md's example
    cfg = load_config(CONFIG_DIR / "gsm8k_llama3.1-8b_zero3.yaml", [f"training.hostfile={hostfile}"])
    t = cfg.training
    cmd = _child_command(tmp_path / "job.json", tmp_path / "result.json", t.launcher, t.num_gpus, t.hostfile)
    assert cmd[1:3] == ["-m", "deepspeed.launcher.runner"]
    args = runner.parse_args(cmd[3:])
    assert args.hostfile == str(hostfile) and args.no_local_rank and args.module
    assert (args.user_script, args.user_args) == (
        "trainers.sft",
        [str(tmp_path / "job.json"), str(tmp_path / "result.json")],
    )
    # The GPUs DeepSpeed will train on are the world the recipe's effective batch of 128 is written for.
    active = runner.parse_inclusion_exclusion(runner.fetch_hostfile(args.hostfile), args.include, args.exclude)
    active = runner.apply_num_nodes_and_gpus(active, args.num_nodes, args.num_gpus)
    assert sum(len(gpus) for gpus in active.values()) == WORLD["gsm8k_llama3.1-8b_zero3"]


def _launch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "launch_multinode.sh"), *args], capture_output=True, text=True, cwd=REPO
    )


def test_the_launch_scripts_dry_run_prints_what_it_would_run(tmp_path: Path) -> None:
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node1 slots=8\nnode2 slots=8\n")
    got = _launch(
        "--config", "configs/gsm8k_llama3.1-8b_zero3.yaml", "--teacher-model", "Qwen/Qwen2.5-72B-Instruct",
        "--teacher-gpus", "4,5,6,7", "--student-gpus", "0,1,2,3", "--hostfile", str(hostfile), "--dry-run",
        "--", "seed=3",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    teacher, wait, run = got.stdout.splitlines()
    assert teacher.startswith("teacher: setsid env CUDA_VISIBLE_DEVICES=4,5,6,7 ")
    assert "-m vllm.entrypoints.openai.api_server --model Qwen/Qwen2.5-72B-Instruct" in teacher
    assert "--tensor-parallel-size 4" in teacher
    assert wait == "wait:    until http://127.0.0.1:8000/v1/models answers (at most 1800s)"
    assert run.startswith("run:     env CUDA_VISIBLE_DEVICES=0,1,2,3 ")
    for part in (
        "gaploop run configs/gsm8k_llama3.1-8b_zero3.yaml",
        "teacher.llm.base_url=http://127.0.0.1:8000/v1",
        "teacher.llm.model=Qwen/Qwen2.5-72B-Instruct",
        "training.launcher=deepspeed",
        f"training.hostfile={hostfile}",
        "seed=3",
    ):
        assert part in run, run
    # The overrides it passes are valid fields of the config it runs.
    words = run.split()
    cfg = load_config(REPO / words[words.index("run") + 1], words[words.index("run") + 2 :])
    assert cfg.training.launcher == "deepspeed" and cfg.training.hostfile == str(hostfile) and cfg.seed == 3
    assert cfg.teacher.llm.base_url == "http://127.0.0.1:8000/v1"
    # A server already running: nothing is started.
    got = _launch(
        "--config", "configs/demo.yaml", "--teacher-model", "m", "--teacher-url", "http://h:9/v1", "--dry-run"
    )
    assert got.returncode == 0 and not got.stdout.startswith("teacher:") and "base_url=http://h:9/v1" in got.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--config is required"),
        (["--config", "nope.yaml", "--teacher-model", "m"], "--config nope.yaml: no such file"),
        (["--config", "configs/demo.yaml"], "--teacher-model is required"),
        (["--config", "configs/demo.yaml", "--teacher-model", "m"], "give --teacher-gpus"),
        (["--config", "configs/demo.yaml", "--teacher-model", "m", "--teacher-gpus", "0,1", "--student-gpus", "1"],
         "GPU 1 is in both"),
        (["--config", "configs/demo.yaml", "--teacher-model", "m", "--teacher-gpus", "a"], "comma-separated"),
        (["--config", "configs/demo.yaml", "--teacher-model", "m", "--teacher-gpus", "0", "--teacher-url", "http://h/v1"],
         "not both"),
        (["--bogus"], "unknown argument '--bogus'"),
    ],
)  # fmt: skip
def test_the_launch_script_refuses_bad_arguments(args: list[str], message: str) -> None:
    got = _launch(*args)
    assert got.returncode == 2 and message in got.stderr, got.stderr


def test_the_launch_script_refuses_a_hostfile_that_trains_on_the_teachers_gpus(tmp_path: Path) -> None:
    # DeepSpeed trains on GPUs 0..slots-1 of each listed node; this node's teacher holds 4-7.
    args = ["--config", "configs/demo.yaml", "--teacher-model", "m", "--teacher-gpus", "4,5,6,7", "--dry-run"]
    hostfile = tmp_path / "hostfile"
    for text, refused in [
        ("localhost slots=8\n", "this node (localhost) with slots=8: training would take GPUs 0-7"),
        (f"# nodes\n\n{os.uname().nodename} slots=5\nnode2 slots=8\n", "slots=5"),
        (f"{os.uname().nodename} slots=4\nnode2 slots=8", None),  # GPUs 0-3 train, 4-7 serve; no final newline
        ("node1 slots=8\nnode2 slots=8\n", None),  # other nodes
    ]:
        hostfile.write_text(text)
        got = _launch(*args, "--hostfile", str(hostfile))
        if refused is None:
            assert got.returncode == 0 and f"training.hostfile={hostfile}" in got.stdout, got.stderr
        else:
            assert got.returncode == 2 and refused in got.stderr and "the teacher holds GPU 4" in got.stderr


# vLLM's own server parser and checks, where this vLLM keeps them (the module the script runs stays the entry).
PARSE_SERVER_ARGS = """
import importlib, json, sys
for name in ("vllm.entrypoints.launchers.cli_args", "vllm.entrypoints.openai.cli_args"):
    try:
        cli = importlib.import_module(name)
        break
    except ImportError:
        continue
from vllm.utils.argparse_utils import FlexibleArgumentParser
assert importlib.util.find_spec(sys.argv[1]), sys.argv[1]
args = cli.make_arg_parser(FlexibleArgumentParser()).parse_args(sys.argv[2:])
cli.validate_parsed_serve_args(args)
print(json.dumps({k: getattr(args, k) for k in ("model", "served_model_name", "port", "tensor_parallel_size",
                                                  "max_model_len")}))
"""


def test_vllm_accepts_the_teacher_command_the_script_runs() -> None:
    import importlib.util
    import json
    import sys

    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed here")
    got = _launch(
        "--config", "configs/gsm8k_llama3.2-1b.yaml", "--teacher-model", "Qwen/Qwen2.5-72B-Instruct",
        "--teacher-gpus", "4,5,6,7", "--teacher-port", "8011", "--teacher-args", "--max-model-len 8192", "--dry-run",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    words = got.stdout.splitlines()[0].split()
    module = words[words.index("-m") + 1]
    server_args = words[words.index("-m") + 2 : words.index(">")]
    parsed = subprocess.run(
        [sys.executable, "-c", PARSE_SERVER_ARGS, module, *server_args], capture_output=True, text=True, timeout=300
    )
    assert parsed.returncode == 0, parsed.stderr[-3000:]
    assert json.loads(parsed.stdout.splitlines()[-1]) == {
        "model": "Qwen/Qwen2.5-72B-Instruct",
        "served_model_name": ["Qwen/Qwen2.5-72B-Instruct"],
        "port": 8011,
        "tensor_parallel_size": 4,
        "max_model_len": 8192,
    }


def test_vllm_knows_the_engine_arguments_of_every_recipe() -> None:
    import importlib.util
    import json
    import sys

    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed here")
    engines = {n: load_config(CONFIG_DIR / f"{n}.yaml").student for n in CONFIGS}
    engines = {n: s.vllm_engine for n, s in engines.items() if s.inference_backend == "vllm"}
    assert engines["gsm8k_llama3.2-1b"] and engines["gsm8k_llama3.1-8b_zero3"]
    code = "import dataclasses, json; from vllm.engine.arg_utils import EngineArgs as E; "
    code += "print(json.dumps([f.name for f in dataclasses.fields(E)]))"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr[-3000:]
    known = set(json.loads(got.stdout.splitlines()[-1]))
    # What trainers/inference.py's VLLMGenerator passes itself, and what each recipe adds.
    assert {"model", "seed", "dtype", "gpu_memory_utilization", "max_model_len", "enforce_eager"} <= known
    for name, engine in engines.items():
        assert set(engine) <= known, (name, sorted(set(engine) - known))


# A stand-in for the teacher's vLLM server (the script runs `$PYTHON -m vllm.entrypoints.openai.api_server ...`)
# and for gaploop, so the real script's start, wait, run and stop are exercised without a GPU.
FAKE_SERVER = """#!{python}
import http.server, json, os, subprocess, sys, time
if sys.argv[1] == "-c":  # the script's `import vllm` check
    sys.exit(0)
args = sys.argv[sys.argv.index("--model"):]
open(os.environ["FAKE_DIR"] + "/server.pid", "w").write(str(os.getpid()))
worker = subprocess.Popen(["sleep", "600"])  # vLLM's server spawns workers; they must be stopped too
info = {{"args": args, "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "worker": worker.pid}}
json.dump(info, open(os.environ["FAKE_DIR"] + "/server.json", "w"))
mode = os.environ["FAKE_MODE"]
if mode == "crash":
    sys.exit("boom: CUDA out of memory while loading the weights")
if mode == "hang":
    time.sleep(600)


class Models(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"data": [{{"id": args[1]}}]}}).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.end_headers()
        self.wfile.write(body)


http.server.HTTPServer(("127.0.0.1", int(args[args.index("--port") + 1])), Models).serve_forever()
"""
FAKE_GAPLOOP = """#!{python}
import json, os, sys, urllib.request
served = json.load(urllib.request.urlopen(sys.argv[3].split("=", 1)[1] + "/models"))  # the teacher answers
json.dump({{"argv": sys.argv[1:], "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "served": served}},
          open(os.environ["FAKE_DIR"] + "/run.json", "w"))
sys.exit(int(os.environ.get("FAKE_RUN_EXIT", "0")))
"""


def _gone(pid: int) -> bool:
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def _fake_launch(tmp_path: Path, mode: str, *extra: str, run_exit: int = 0) -> subprocess.CompletedProcess[str]:
    import json
    import sys

    for name, text in (("python", FAKE_SERVER), ("gaploop", FAKE_GAPLOOP)):
        (tmp_path / name).write_text(text.format(python=sys.executable))
        (tmp_path / name).chmod(0o755)
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHON": str(tmp_path / "python"),
        "GAPLOOP": str(tmp_path / "gaploop"),
        "FAKE_DIR": str(tmp_path),
        "FAKE_MODE": mode,
        "FAKE_RUN_EXIT": str(run_exit),
    }
    args = ["--config", "configs/demo.yaml", "--teacher-model", "org/teacher", "--teacher-gpus", "2,3"]
    args += ["--student-gpus", "0,1", "--teacher-port", str(port), "--log-dir", str(tmp_path / "logs"), *extra]
    got = subprocess.run(
        ["bash", str(REPO / "scripts" / "launch_multinode.sh"), *args],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )  # fmt: skip
    got.server = json.loads((tmp_path / "server.json").read_text())  # type: ignore[attr-defined]
    # The teacher and its workers are stopped whatever happened (the worker is reaped by init, or a zombie).
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "server.pid").read_text()), 0)
    assert _gone(got.server["worker"]), "the teacher's worker process outlived the script"  # type: ignore[attr-defined]
    return got


def test_the_launch_script_serves_the_teacher_waits_runs_and_stops_it(tmp_path: Path) -> None:
    import json

    got = _fake_launch(tmp_path, "serve", "--", "seed=3")
    assert got.returncode == 0, got.stderr
    assert got.server["gpus"] == "2,3" and "--tensor-parallel-size" in got.server["args"]  # type: ignore[attr-defined]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["gpus"] == "0,1" and run["served"] == {"data": [{"id": "org/teacher"}]}
    assert run["argv"][:2] == ["run", "configs/demo.yaml"] and run["argv"][-1] == "seed=3"
    assert "training.launcher=deepspeed" in run["argv"] and "teacher.llm.model=org/teacher" in run["argv"]
    assert "stopping the teacher" in got.stderr
    # The run's own exit status is the script's.
    assert _fake_launch(tmp_path, "serve", run_exit=3).returncode == 3


def test_the_launch_script_reports_a_teacher_that_dies_or_never_answers(tmp_path: Path) -> None:
    got = _fake_launch(tmp_path, "crash")
    assert got.returncode == 1 and "the teacher's server exited" in got.stderr
    assert "boom: CUDA out of memory" in got.stderr  # the end of its log
    assert not (tmp_path / "run.json").exists()
    got = _fake_launch(tmp_path, "hang", "--wait", "1")
    assert got.returncode == 1 and "did not answer at http://127.0.0.1:" in got.stderr and "within 1s" in got.stderr
    assert not (tmp_path / "run.json").exists()
