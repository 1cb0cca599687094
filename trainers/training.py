"""The training schema: what a run config's `training:` section sets, carried as is by the SFT job.

One pydantic model serves both sides: `loop/config.py` puts it in the run config (so its errors name the
field, and `key=value` overrides reach it), and `trainers.sft.SFTJob` holds the same object, so the trainer
reads the run's settings without a field-by-field copy. Checks against this machine's files (the hostfile,
the DeepSpeed JSON) run where the config is made; a job read back in its child skips them
(`core.jobs.IN_CHILD`), since a rank on another node reads the same job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _in_child(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("in_child"))


class TrainingConfig(BaseModel):
    """SFT of the student with DeepSpeed."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    from_base: bool = Field(True, description="retrain from the base each round (LLM2LLM) or continue")
    epochs: float | None = Field(None, gt=0, description="passes over the pool; or set max_steps")
    max_steps: int | None = Field(300, ge=1)
    micro_batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(3e-3, gt=0)
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    # Off by default: length-grouped batches are nearly one task type each on the task world (lengths differ by
    # task); shuffled batches mix tasks, which trains the tiny student far better.
    group_by_length: bool = Field(False, description="batch rows of similar length (less padding, less mixing)")
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass: far less activation memory, ~1/3 more compute"
    )
    zero_stage: Literal[0, 1, 2, 3] = 0
    deepspeed_config: str | None = Field(
        None,
        description="a DeepSpeed JSON whose 'auto' values this section fills (default configs/deepspeed/zero<stage>"
        ".json); a relative path is read from the working directory, else from configs/",
    )
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    launcher: Literal["auto", "python", "deepspeed"] = "auto"
    num_gpus: int | None = Field(None, ge=1)
    hostfile: str | None = Field(
        None, description="a DeepSpeed hostfile ('node slots=8' lines): train on its nodes through pdsh/ssh"
    )

    @field_validator("hostfile")
    @classmethod
    def _hostfile_is_there(cls, value: str | None, info: ValidationInfo) -> str | None:
        # DeepSpeed's launcher trains on this node alone, with a warning, when the hostfile is missing; the
        # trainer also runs from the package root, where a relative path would name another file.
        if value is None or _in_child(info):
            return value
        path = Path(value)
        if not path.is_file():
            raise ValueError(f"no such file: {path} (DeepSpeed would silently train on this node alone)")
        return str(path.absolute())

    @model_validator(mode="after")
    def _one_budget(self, info: ValidationInfo) -> TrainingConfig:
        if (self.epochs is None) == (self.max_steps is None):
            raise ValueError("set exactly one of epochs and max_steps (the other to null)")
        if self.deepspeed_config is not None and not _in_child(info):
            path = Path(self.deepspeed_config)
            found = next((p for p in (path, CONFIGS / path) if p.is_file()), None)
            if found is None:
                raise ValueError(f"deepspeed_config {path}: no such file (here or in {CONFIGS})")
            try:
                stage = json.loads(found.read_text()).get("zero_optimization", {}).get("stage", "auto")
            except (json.JSONDecodeError, AttributeError) as err:
                raise ValueError(f"deepspeed_config {found}: not a JSON object ({err})") from err
            if stage not in ("auto", self.zero_stage):
                raise ValueError(
                    f"deepspeed_config {found} sets ZeRO stage {stage} but zero_stage is {self.zero_stage}"
                )
            # Stored resolved, so the run directory's config.yaml still finds it on resume from elsewhere.
            object.__setattr__(self, "deepspeed_config", str(found.resolve()))
        return self
