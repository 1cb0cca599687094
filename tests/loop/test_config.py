from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from loop.config import CONFIG_DIR, ConfigError, dump_config, load_config, parse_override


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
        ("synthesis.strategy=best", ["synthesis.strategy", "'best'", "'frontier'"]),
        ("training.max_steps=100", ["exactly one of epochs and max_steps"]),
        ("student.tiny.hidden_size=130", ["multiple of num_heads"]),
        ("ifd.top_share=1.5", ["ifd.top_share", "1.5", "less than or equal to 1"]),
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
    assert set(data) >= {"student", "teacher", "task", "rounds", "synthesis", "filters", "ifd", "training"}
