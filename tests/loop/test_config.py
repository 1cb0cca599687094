from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from loop.config import CONFIG_DIR, ConfigError, config_from_dict, dump_config, load_config, parse_override


def test_every_shipped_config_loads() -> None:
    files = sorted(CONFIG_DIR.glob("*.yaml"))
    assert files, "configs/ has no YAML files"
    for f in files:
        cfg = load_config(f)
        assert cfg.name


def test_overrides_are_typed() -> None:
    cfg = load_config(
        overrides=[
            "training.lr=1e-4",
            "training.from_base=false",
            "task.points=[add.carry, cmp.max]",
            "seed=7",
        ]
    )
    assert cfg.training.lr == pytest.approx(1e-4)
    assert cfg.training.from_base is False
    assert cfg.task.points == ["add.carry", "cmp.max"]
    assert cfg.seed == 7


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("training.lr=fast", ["training.lr", "'fast'", "valid number"]),
        ("training.lrr=1", ["training.lrr", "unknown field", "lr_schedule"]),
        ("synthesis.plan=best", ["synthesis.plan", "unknown plan 'best'", "allowed: autodetect, frontier"]),
        ("synthesis.strategy=best", ["synthesis.plan", "unknown plan 'best'", "frontier"]),  # the old key, mapped
        ("synthesis.plan.park_after=5", ["synthesis.plan.park_after", "unknown field", "allowed: name"]),  # weakness
        ("examiner={name: failure_rates, refin: true}", ["examiner.refin", "unknown field", "max_refinements"]),
        ("examiner.refine=false", ["examiner", "with a 'name' field", "allowed names: autodetect, failure_rates"]),
        (
            "synthesis.select=[dedup, {name: ifd, top_share: 1.5}]",
            ["synthesis.select.1.top_share", "1.5", "less than or equal to 1"],
        ),
        ("training.max_steps=100", ["exactly one of epochs and max_steps"]),
        ("student.tiny.hidden_size=130", ["multiple of num_heads"]),
        ("ifd.top_share=1.5", ["top_share", "1.5", "less than or equal to 1"]),  # the old key, mapped
        ("ifd.model=/no/such/proxy", ["ifd.model", "no model at '/no/such/proxy'"]),
        ("synthesis.mix=[{share: 0.5}, {share: 0.4, plan: random}]", ["synthesis.mix", "sum to 0.9, not 1"]),
        ("synthesis.mix=[{share: 0.5}, {share: 0.5}]", ["synthesis.mix[1]", "'weakness+generator' is taken"]),
        (
            "synthesis.mix=[{share: 0.5, writer: auto_evol_instruct}, "
            "{share: 0.5, plan: random, writer: auto_evol_instruct}]",
            ["synthesis.mix[1].writer", "keeps state across rounds", "in a mix once"],
        ),
        ("synthesis.mix=[{share: 1.5}]", ["synthesis.mix.0.share", "less than or equal to 1"]),
        ("synthesis.mix=[{share: 1, label: 'a b'}]", ["synthesis.mix.0.label", "should match pattern"]),
        ("ifd.model=proxy.gguf", ["ifd.model", "does not exist"]),
    ],
)
def test_bad_values_name_field_value_and_allowed(override: str, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    for needle in needles:
        assert needle in str(info.value)


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="not key=value"):
        parse_override("training.lr")
    with pytest.raises(ConfigError, match="empty key"):
        parse_override("training..lr=1")
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(overrides=["seed.x=1"])


def test_bad_yaml_file_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntraining:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(scalar)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_resolved_config_round_trips() -> None:
    cfg = load_config(overrides=["training.lr=0.002"])
    again = load_config.__wrapped__ if hasattr(load_config, "__wrapped__") else None
    assert again is None
    data = yaml.safe_load(dump_config(cfg))
    assert data["training"]["lr"] == pytest.approx(0.002)
    assert set(data) >= {"student", "teacher", "task", "rounds", "synthesis", "examiner", "ifd", "training"}


def test_deepspeed_config_is_found_here_or_under_configs_and_stored_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loop.student import sft_job

    monkeypatch.chdir(tmp_path)
    shipped = load_config(overrides=["training.zero_stage=3", "training.deepspeed_config=deepspeed/zero3.json"])
    assert shipped.training.deepspeed_config == str(CONFIG_DIR / "deepspeed" / "zero3.json")
    (tmp_path / "deepspeed").mkdir()
    own = tmp_path / "deepspeed" / "zero3.json"  # the working directory comes first
    own.write_text('{"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}}')
    cfg = load_config(overrides=["training.zero_stage=3", "training.deepspeed_config=deepspeed/zero3.json"])
    assert cfg.training.deepspeed_config == str(own.resolve())
    # The training job gets it, and the run directory's config.yaml loads back the same from elsewhere.
    assert sft_job(cfg, Path("b"), Path("t"), Path("o")).training.deepspeed_config == str(own.resolve())
    monkeypatch.chdir(CONFIG_DIR)
    assert config_from_dict(yaml.safe_load(dump_config(cfg)), "config.yaml") == cfg


@pytest.mark.parametrize(
    ("text", "stage", "needle"),
    [
        ('{"zero_optimization": {"stage": 2}}', 3, "sets ZeRO stage 2 but zero_stage is 3"),
        ("[1, 2]", 0, "not a JSON object"),
        ("{not json", 0, "not a JSON object"),
    ],
)
def test_a_bad_deepspeed_config_names_the_field_and_why(tmp_path: Path, text: str, stage: int, needle: str) -> None:
    path = tmp_path / "ds.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[f"training.zero_stage={stage}", f"training.deepspeed_config={path}"])
    assert "training" in str(info.value) and needle in str(info.value)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(overrides=["training.deepspeed_config=deepspeed/zero9.json"])


def test_a_hostfile_must_exist_and_is_stored_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # DeepSpeed's launcher would train on this node alone, with only a warning, if the file were missing.
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["training.hostfile=no_such_hostfile"])
    assert "training.hostfile" in str(info.value) and "no such file" in str(info.value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hostfile").write_text("node1 slots=8\n")
    assert load_config(overrides=["training.hostfile=hostfile"]).training.hostfile == str(tmp_path / "hostfile")
