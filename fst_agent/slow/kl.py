"""KL(pi_theta || pi_base) on the sampled tokens: where the base log-probs come from, and the estimator.

The estimator is TRL's (Schulman's k3): per token ``exp(b - p) - (b - p) - 1`` with ``p = log pi_theta(y_t)``,
``b = log pi_base(y_t)`` of the sampled token; non-negative, unbiased for the KL when the tokens were sampled
from pi_theta. ``p`` is the policy log-prob the loss computes anyway (no extra forward); ``b`` comes from:

* ``ref_model`` - ``beta > 0``: TRL's own reference log-probs (a reference model, or the adapter-disabled
  policy under LoRA), which TRL computes for its KL penalty anyway: free.
* ``frozen_copy`` - ``beta = 0``, full fine-tuning: a frozen copy of the model as it was passed to the
  trainer. Costs one model's memory and one no-grad forward over each generation batch (what TRL's own
  reference pass costs when ``beta > 0``).
* ``lora_disabled`` - ``beta = 0`` under LoRA: the policy's forward with its adapters disabled. No extra
  memory; one no-grad forward per generation batch.
* ``off`` - ``beta = 0`` and not measured.

A resumed run keeps measuring against the *initial* model: the frozen copy is taken from the model the
trainer was built with (the base), before ``train(resume_from_checkpoint=...)`` loads trained weights.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch

__all__ = ["KLSource", "frozen_copy", "per_token_kl", "resolve_kl_source"]

KLSource = Literal["ref_model", "frozen_copy", "lora_disabled", "off"]


def resolve_kl_source(setting: str, *, beta: float, lora: bool) -> KLSource:
    """Which base log-probs a run uses (see the module doc). ``lora``: the policy trains LoRA adapters."""
    if beta != 0.0:
        return "ref_model"
    if setting == "off":
        return "off"
    if setting == "auto":
        return "lora_disabled" if lora else "frozen_copy"
    if setting == "lora_disabled" and not lora:
        raise ValueError("kl_to_base 'lora_disabled' needs a LoRA policy (a `lora:` block in the slow config, or a "
                         "peft model); use 'frozen_copy' or 'auto' for full fine-tuning")
    if setting not in ("frozen_copy", "lora_disabled"):
        raise ValueError(f"kl_to_base must be auto, frozen_copy, lora_disabled or off, got {setting!r}")
    return setting  # type: ignore[return-value]


def per_token_kl(policy_logps: torch.Tensor, base_logps: torch.Tensor) -> torch.Tensor:
    """k3 per token: ``exp(b - p) - (b - p) - 1``."""
    delta = base_logps - policy_logps
    return torch.exp(delta) - delta - 1


def frozen_copy(model: Any) -> Any:
    """A detached, gradient-free, eval-mode deep copy of ``model`` (taken before TRL wraps or patches it)."""
    base = copy.deepcopy(model)
    base.requires_grad_(False)
    base.eval()
    return base
