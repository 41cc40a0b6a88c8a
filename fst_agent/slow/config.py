"""The slow loop's config: our fields, plus a ``trl:`` block passed through to ``trl.GRPOConfig``.

```yaml
advantage: {scheme: turn_mix, turn_weight: 0.5}
drop_equal_reward_groups: true
kl_to_base: auto
lora: {r: 16, alpha: 32}            # optional: LoRA through TRL's peft_config (needs fst-agent[peft])
trl:                                # any trl.GRPOConfig field; unknown names are errors
  loss_type: cispo                  # grpo | dr_grpo | dapo | cispo (default cispo, the paper's)
  epsilon_high: 4.0                 # the paper's CISPO cap (the default with cispo)
  beta: 0.001
  num_generations: 8
  learning_rate: 1.0e-6
```

``SlowConfig.grpo_config(output_dir, **overrides)`` builds the ``GRPOConfig``: our CPU defaults, then the
``trl:`` block, then the overrides (the loop's ``max_steps``, ``seed``, ``save_steps``, ...).

CISPO: the loss is ``-min(ratio, epsilon_high).detach() * A * log pi`` with ``ratio = pi_theta / pi_old``.
The cap binds only when the policy moves between generation and update (``num_iterations > 1``, or more
generation micro-batches than gradient-accumulation steps); with one on-policy update per generation the
ratio is exactly 1. TRL leaves ``epsilon_high`` at ``epsilon`` (0.2) when unset, which would cap every
on-policy weight at 0.2, so with ``cispo`` we default it to the paper's 4.0 and refuse values below 1.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fst_agent.slow.advantages import Scheme

__all__ = ["AdvantageConfig", "LoraSettings", "SlowConfig", "SUPPORTED_LOSS_TYPES", "grpo_config_fields"]

SUPPORTED_LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "cispo")
#: the paper's CISPO importance-sampling cap (TRL: ``epsilon_high`` with ``loss_type="cispo"``)
CISPO_CAP = 4.0
DEFAULT_LOSS_TYPE = "cispo"
# the trainer supplies the only reward function and owns these
_OWNED_BY_US = {
    "output_dir": "pass output_dir to SlowConfig.grpo_config(output_dir=...)",
    "reward_weights": "the trainer has exactly one reward function (the rollout's final_reward); turn rewards are "
    "weighted by advantage.turn_weight",
}


@functools.lru_cache(maxsize=1)
def grpo_config_fields() -> frozenset[str]:
    """The names ``trl.GRPOConfig(...)`` accepts."""
    from trl import GRPOConfig

    return frozenset(f.name for f in dataclasses.fields(GRPOConfig) if f.init)


def _check_trl_keys(keys: Any, where: str) -> None:
    fields = grpo_config_fields()
    for key in keys:
        if key in _OWNED_BY_US:
            raise ValueError(f"{where}: {key!r} is not settable here: {_OWNED_BY_US[key]}")
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"{where}: unknown field {key!r}: not a trl.GRPOConfig field{hint}")


def _check_trl_values(values: dict[str, Any], where: str) -> None:
    loss = values.get("loss_type", DEFAULT_LOSS_TYPE)
    if loss not in SUPPORTED_LOSS_TYPES:
        raise ValueError(f"{where}: loss_type {loss!r} is not supported; use one of {', '.join(SUPPORTED_LOSS_TYPES)}")
    agg = values.get("multi_objective_aggregation", "sum_then_normalize")
    if agg != "sum_then_normalize":
        raise ValueError(f"{where}: multi_objective_aggregation {agg!r}: with one reward function only "
                         "'sum_then_normalize' keeps the outcome advantage equal to TRL's")
    high = values.get("epsilon_high")
    if loss == "cispo" and high is not None and high < 1.0:
        raise ValueError(f"{where}: epsilon_high={high} with loss_type 'cispo' caps every on-policy importance weight "
                         f"(ratio 1) below 1; the paper's cap is {CISPO_CAP}")


class AdvantageConfig(BaseModel):
    """How per-turn rewards become per-token advantages (formulas: :mod:`fst_agent.slow.advantages`).

    * ``outcome``: ``A_{i,k} = norm_g(F_i)``, TRL's own advantage on every model token.
    * ``turn_mix`` (MT-GRPO-style): ``A_{i,k} = norm_g(F_i) + turn_weight * norm_{g,k}(r_{i,k})``, the turn term
      normalized over the group's rollouts that have a turn k.
    * ``discounted``: ``A_{i,k} = (R_{i,k} - mean_g R_{.,0}) / (std_g R_{.,0} + eps)``, with the return-to-go
      ``R_{i,k} = sum_{j>=k} gamma^(j-k) turn_weight r_{i,j} + gamma^(K_i-1-k) F_i``.

    ``norm_g(x) = (x - mean over the group) / (std over the group + 1e-4)`` (TRL's ``scale_rewards`` decides
    group/batch/no std). One turn with no turn reward reduces every scheme exactly to TRL's advantages.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme: Scheme = Field(
        "turn_mix",
        description="outcome: TRL's group-normalized final reward on every model token. turn_mix: that plus "
        "turn_weight x the group-normalized reward of each turn on that turn's tokens (MT-GRPO-style). discounted: "
        "each turn's return-to-go sum_{j>=k} gamma^(j-k) turn_weight r_j + gamma^(K-1-k) F, centred and scaled by "
        "the group's whole-episode returns.",
    )
    turn_weight: float = Field(
        0.5, ge=0, le=100,
        description="Weight of the turn rewards: of the normalized turn advantage (turn_mix) or of each turn reward "
        "in the return (discounted). 0 ignores turn rewards (then turn_mix equals outcome).",
    )
    gamma: float = Field(
        1.0, gt=0, le=1,
        description="Discount per turn of later rewards in the return-to-go (discounted only); 1 = no discount.",
    )


class LoraSettings(BaseModel):
    """LoRA adapters on the policy, handed to TRL as ``peft_config`` (a ``peft.LoraConfig``, task CAUSAL_LM).

    Needs ``peft`` (``pip install 'fst-agent[peft]'``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(16, ge=1, le=4096, description="Rank of the adapter matrices.")
    alpha: float = Field(32.0, gt=0, description="LoRA scaling numerator (lora_alpha); the update is scaled by alpha / r.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input (lora_dropout).")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names (or suffixes) that get adapters, or 'all-linear' for every linear "
        "layer except the output head."
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases are trained.")
    modules_to_save: list[str] | None = Field(
        None, description="Modules trained in full and saved with the adapter (e.g. ['lm_head']); None: none."
    )

    def to_peft(self) -> Any:
        """The ``peft.LoraConfig``; a clear ImportError when peft is missing."""
        try:
            from peft import LoraConfig
        except ImportError as exc:
            raise ImportError("the slow config has a `lora:` block, which needs peft: pip install 'fst-agent[peft]'") from exc
        return LoraConfig(
            task_type="CAUSAL_LM",
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            bias=self.bias,
            modules_to_save=self.modules_to_save,
        )


KLToBase = Literal["auto", "frozen_copy", "lora_disabled", "off"]


class SlowConfig(BaseModel):
    """GRPO on the weights (TRL ``GRPOTrainer``) with turn-level credit and KL to the base model measured."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    advantage: AdvantageConfig = Field(default_factory=AdvantageConfig, description="Turn-level credit assignment.")
    drop_equal_reward_groups: bool = Field(
        True,
        description="Leave out of the loss every group (one problem's G rollouts) whose scorable rollouts all carry "
        "the same reward signal, or that has fewer than two scorable rollouts: its advantages are all zero, and "
        "keeping it would only dilute the loss normalizer and add KL-penalty gradient (the paper drops them).",
    )
    kl_to_base: KLToBase = Field(
        "auto",
        description="How KL(pi_theta || pi_base) on the sampled tokens is measured when beta = 0 (with beta > 0 TRL's "
        "reference log-probs are reused at no cost). frozen_copy: a frozen copy of the initial model (one model's "
        "memory, one no-grad forward per generation batch). lora_disabled: the policy with its LoRA adapters "
        "disabled (no extra memory, same forward). auto: lora_disabled under LoRA, else frozen_copy. off: not "
        "measured when beta = 0.",
    )
    lora: LoraSettings | None = Field(None, description="LoRA adapters instead of full fine-tuning; None: full fine-tuning.")
    trl: dict[str, Any] = Field(
        default_factory=dict,
        description="Passed through to trl.GRPOConfig (every key must be one of its fields). Our defaults: "
        "loss_type cispo with epsilon_high 4.0, report_to none, and on a machine without CUDA use_cpu true, bf16 false.",
    )

    @field_validator("trl")
    @classmethod
    def _known_trl_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_trl_keys(value, "slow config trl: block")
        _check_trl_values(value, "slow config trl: block")
        return value

    def trl_defaults(self) -> dict[str, Any]:
        """Our defaults under the ``trl:`` block: CPU-safe precision, no metrics writer unless asked, CISPO."""
        import torch

        defaults: dict[str, Any] = {"loss_type": DEFAULT_LOSS_TYPE, "report_to": "none"}
        if not torch.cuda.is_available():
            defaults.update(use_cpu=True, bf16=False)
        return defaults

    def grpo_config(self, output_dir: str, **overrides: Any) -> Any:
        """A ``trl.GRPOConfig``: our defaults, then the ``trl:`` block, then ``overrides`` (checked the same way)."""
        from trl import GRPOConfig

        _check_trl_keys(overrides, "grpo_config overrides")
        values = {**self.trl_defaults(), **self.trl, **overrides}
        _check_trl_values(values, "grpo_config")
        if values["loss_type"] == "cispo" and values.get("epsilon_high") is None:
            values["epsilon_high"] = CISPO_CAP
        try:
            return GRPOConfig(output_dir=str(output_dir), **values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"trl.GRPOConfig rejected the slow config (trl: block + overrides): {exc}") from exc

    def peft_config(self) -> Any:
        """``peft.LoraConfig`` for TRL's ``peft_config``, or None without a ``lora:`` block."""
        return self.lora.to_peft() if self.lora is not None else None
