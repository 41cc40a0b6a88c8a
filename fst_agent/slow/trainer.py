"""``FSTGRPOTrainer``: TRL's ``GRPOTrainer`` (1.16) on multi-turn episodes, with turn-level credit.

TRL keeps doing what it does (losses, accelerate/DeepSpeed/FSDP, PEFT, vLLM, logging); we change four
things, all around its own methods:

1. **Rollouts.** Episodes come from our rollout engine through ``rollout_func`` (RolloutBatch.to_trl()). The
   call runs with the policy unwrapped for generation (gradient checkpointing off, so the KV cache works;
   ZeRO-3 parameters gathered) and its output is checked (:mod:`fst_agent.slow.rollouts`). The only reward
   function is ours: the episode's ``final_reward`` (None for a masked episode). ``env_mask`` becomes TRL's
   ``tool_mask``: observation (tool) tokens never enter the loss.
2. **Advantages.** ``_generate_and_score_completions`` calls TRL's, then replaces its (B,) advantages by
   (B, T) per-token ones from :func:`fst_agent.slow.advantages.compute_advantages` over the gathered batch
   (per problem over all G rollouts, whatever context each used).
3. **Rows out of the loss.** A masked row (final reward None: sandbox_error / env_error) gets advantage 0 and
   is left out of its group's mean and std — TRL 1.16 already does both for an all-None row — and out of the
   loss, which TRL does *not* do: it keeps the row's tokens in the loss mask, so they dilute the token
   normalizer (dapo/cispo ``num_items_in_batch``), count in grpo's per-sequence mean and take the KL
   penalty. We zero those rows (and the rows of dropped groups) in ``tool_mask``, recompute
   ``num_items_in_batch``, and for the per-sequence losses (grpo, dr_grpo) rescale each micro-batch's loss
   by ``rows / rows in the loss`` so the mean is over the rows that remain. (TRL's entropy bonus and MoE
   aux loss, when enabled, sit inside that loss and get the same factor.)
4. **KL to the base model**, measured every step even at ``beta = 0`` (:mod:`fst_agent.slow.kl`): the
   policy log-probs are the ones the loss computes; the base ones are TRL's reference log-probs when
   ``beta > 0``, else a frozen copy's or the LoRA-disabled policy's, computed once per generation batch.

Metrics, through TRL's ``_metrics`` (so ``report_to`` and ``state.log_history`` carry them):
``kl_to_base`` (per micro-batch, k3 over every model token of the sampled completions, masked rows
included), TRL's ``entropy``/``kl``/``reward``/..., and per generation batch ``reward/turn_<k>`` (mean reward
of turn k, 1-based, over scorable episodes that have it), ``turns/mean``, ``episodes/<status>`` (counts),
``episodes/masked``, ``groups/dropped``.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
import torch
from accelerate.utils import gather_object, is_peft_model
from trl import GRPOTrainer
from trl.models import prepare_deepspeed, prepare_fsdp, unwrap_model_for_generation
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import add_fused_lm_head, create_model_from_path, disable_dropout_in_model, use_adapter

from fst_agent.slow.advantages import compute_advantages, token_advantages
from fst_agent.slow.config import SUPPORTED_LOSS_TYPES, SlowConfig
from fst_agent.slow.kl import frozen_copy, per_token_kl, resolve_kl_source
from fst_agent.slow.rollouts import RolloutOutputError, check_rollout_output

log = structlog.get_logger("fst_agent.slow")

__all__ = ["FSTGRPOTrainer", "final_reward"]

RolloutFunc = Callable[[list[Any], Any], dict[str, Any]]

# the extra (B, ...) tensors we add to TRL's batch; TRL shuffles and splits them with the rest
_MODEL_TOKENS = "fst_model_token_mask"
_LOSS_ROWS = "fst_loss_rows"
_BASE_LOGPS = "fst_base_per_token_logps"

_REFUSED = {
    "reward_funcs": "the reward is the episode's final_reward from the rollout_func (turn rewards enter through "
    "SlowConfig.advantage)",
    "reward_processing_classes": "there is no reward model",
    "environment_factory": "episodes come from rollout_func (fst_agent.policy.rollout.make_rollout_func)",
    "tools": "tools belong to the environment behind rollout_func",
    "peft_config": "set a `lora:` block in the SlowConfig",
}


def final_reward(prompts: list[Any], completions: list[Any], completion_ids: list[Any], *,
                 final_reward: list[float | None], reward_masked: list[bool] | None = None, **_: Any) -> list[float | None]:
    """The trainer's only reward function: each episode's final reward, None where it is masked."""
    masked = reward_masked or [False] * len(final_reward)
    return [None if r is None or m else float(r) for r, m in zip(final_reward, masked, strict=True)]


class FSTGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with multi-turn rollouts, turn-level (B, T) advantages, masked rows out of the loss,
    and KL to the base model measured every step (see the module doc).

    ``FSTGRPOTrainer(model, processing_class, args, slow_config=..., rollout_func=..., train_dataset=...)``:
    ``args`` from :meth:`SlowConfig.grpo_config` (a hand-made ``GRPOConfig`` is checked the same way);
    ``rollout_func(prompts, trainer) -> RolloutBatch.to_trl()``; the dataset's ``prompt`` column is what
    ``rollout_func`` maps to tasks, equal prompts forming one group of ``num_generations`` contiguous rows.
    ``kl_source`` says where the base log-probs come from (``ref_model``, ``frozen_copy``,
    ``lora_disabled`` or ``off``).
    """

    def __init__(
        self,
        model: Any,
        processing_class: Any = None,
        args: Any = None,
        *,
        slow_config: SlowConfig | None = None,
        rollout_func: RolloutFunc | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        callbacks: list[Any] | None = None,
        optimizers: tuple[Any, Any] = (None, None),
        **kwargs: Any,
    ) -> None:
        for name in kwargs:
            if name in _REFUSED:
                raise TypeError(f"FSTGRPOTrainer does not take {name!r}: {_REFUSED[name]}")
        if rollout_func is None:
            raise ValueError("FSTGRPOTrainer needs a rollout_func (fst_agent.policy.rollout.make_rollout_func)")
        slow = slow_config if slow_config is not None else SlowConfig()
        if args is None:
            args = slow.grpo_config(output_dir="fst-grpo")
        _check_args(args)
        peft_config = slow.peft_config()
        self.slow_config = slow
        lora = peft_config is not None or (not isinstance(model, str) and is_peft_model(model))
        self.kl_source = resolve_kl_source(slow.kl_to_base, beta=args.beta, lora=lora)
        # the copy is taken before TRL wraps the model (PEFT) or patches its forward
        base = frozen_copy(model) if self.kl_source == "frozen_copy" and not isinstance(model, str) else None
        self._model_id = model if isinstance(model, str) else None
        self._user_rollout_func = rollout_func
        self._capture_logps = False
        self._captured_logps: torch.Tensor | None = None
        self._base_model: Any = None
        super().__init__(
            model=model,
            reward_funcs=[final_reward],
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
            peft_config=peft_config,
            rollout_func=self._rollout,
            **kwargs,
        )
        if self.kl_source == "frozen_copy":
            self._base_model = self._prepare_base_model(base)
        log.info("slow.trainer", loss_type=self.loss_type, beta=self.beta, kl_source=self.kl_source,
                 scheme=slow.advantage.scheme, drop_equal_reward_groups=slow.drop_equal_reward_groups,
                 lora=peft_config is not None)

    # ---- set-up ----------------------------------------------------------------------------------------

    def _prepare_base_model(self, base: Any) -> Any:
        """The frozen copy, patched and placed as TRL does its own reference model."""
        if base is None:  # the policy was given by name: load the base the same way
            kwargs = dict(self.args.model_init_kwargs or {})
            if self.args.distributed_state.distributed_type in ["MULTI_GPU", "DEEPSPEED"]:
                kwargs["device_map"] = None
            base = frozen_copy(create_model_from_path(self._model_id, **kwargs))
        add_fused_lm_head(base, temperature=self.temperature, cast_lm_head_to_fp32=self.args.cast_lm_head_to_fp32)
        if self.args.disable_dropout:
            disable_dropout_in_model(base)
        if self.is_deepspeed_enabled:
            return prepare_deepspeed(base, self.accelerator)
        if self.is_fsdp_enabled:
            return prepare_fsdp(base, self.accelerator)
        return self.accelerator.prepare_model(base, evaluation_mode=True)

    # ---- rollouts ----------------------------------------------------------------------------------------

    def _rollout(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        """The user's rollout_func, run with the policy ready for generation; its output checked."""
        if self.use_vllm:  # vLLM generates with its own copy of the weights (TRL syncs them)
            ctx: Any = contextlib.nullcontext()
        else:
            ctx = unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                              gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs)
        with ctx:
            output = self._user_rollout_func(prompts, trainer)
        try:
            return check_rollout_output(output, len(prompts), self._tokenizer.pad_token_id)
        except RolloutOutputError as exc:
            raise RolloutOutputError(f"{exc} [rollout_func {getattr(self._user_rollout_func, '__name__', '?')}]") from None

    # ---- advantages, masks, base log-probs, metrics --------------------------------------------------------

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        device = output["completion_ids"].device
        n_local = len(inputs)

        rewards = final_reward([], [], [], final_reward=[x["final_reward"] for x in inputs],
                               reward_masked=[bool(x.get("reward_masked")) for x in inputs])
        turn_rewards = [list(x["turn_rewards"]) for x in inputs]
        everyone = gather_object([(r, t, x.get("status"), x.get("group_id"))
                                  for r, t, x in zip(rewards, turn_rewards, inputs, strict=True)])
        all_rewards = [row[0] for row in everyone]
        all_turns = [row[1] for row in everyone]
        _check_groups([row[3] for row in everyone], group_size)

        advice = self.slow_config.advantage
        adv = compute_advantages(
            all_rewards, all_turns, group_size, scheme=advice.scheme, turn_weight=advice.turn_weight,
            gamma=advice.gamma, scale_rewards=self.scale_rewards,
            drop_equal_groups=self.slow_config.drop_equal_reward_groups,
        )
        start = self.accelerator.process_index * n_local
        local = slice(start, start + n_local)
        completion_mask = output["completion_mask"]
        output["advantages"] = token_advantages(
            adv.per_turn[local], [x["turn_spans"] for x in inputs], adv.outcome[local], completion_mask.size(1)
        ).to(device)

        tool_mask = output.get("tool_mask")
        model_tokens = completion_mask if tool_mask is None else completion_mask * tool_mask
        in_loss = adv.in_loss[local].to(device)
        kept_mask = (torch.ones_like(completion_mask) if tool_mask is None else tool_mask) * in_loss.unsqueeze(1).to(completion_mask.dtype)
        output["tool_mask"] = kept_mask
        output["num_items_in_batch"] = self.accelerator.gather((completion_mask * kept_mask).sum()).sum()
        output[_MODEL_TOKENS] = model_tokens
        output[_LOSS_ROWS] = in_loss.to(torch.float32)

        if self.kl_source in ("frozen_copy", "lora_disabled"):
            output[_BASE_LOGPS] = self._base_logps(output, mode)

        self._log_batch(mode, adv, all_rewards, all_turns, [row[2] for row in everyone])
        return output

    @torch.no_grad()
    def _base_logps(self, batch: dict[str, Any], mode: str) -> torch.Tensor:
        """log pi_base of every completion token of the local generation batch (frozen copy or adapters off)."""
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        keep = batch["completion_ids"].size(1)
        size = self.args.per_device_train_batch_size if mode == "train" else self.args.per_device_eval_batch_size
        if self.kl_source == "frozen_copy":
            logps, _, _ = self._get_per_token_logps_and_entropies(self._base_model, ids, attention, keep, batch_size=size)
            return logps
        with disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs), \
                use_adapter(self.accelerator.unwrap_model(self.model), adapter_name=None):
            logps, _, _ = self._get_per_token_logps_and_entropies(self.model, ids, attention, keep, batch_size=size)
        return logps

    def _log_batch(self, mode: str, adv: Any, rewards: list[float | None], turns: list[list[float]],
                   statuses: list[str | None]) -> None:
        metrics = self._metrics[mode]
        for status, count in sorted(Counter(s or "unknown" for s in statuses).items()):
            metrics[f"episodes/{status}"].append(float(count))
        metrics["episodes/masked"].append(float(sum(r is None for r in rewards)))
        metrics["groups/dropped"].append(float(adv.dropped_groups))
        scored = [t for r, t in zip(rewards, turns, strict=True) if r is not None]
        if scored:
            metrics["turns/mean"].append(sum(map(len, scored)) / len(scored))
        for k in range(max((len(t) for t in scored), default=0)):
            values = [t[k] for t in scored if len(t) > k]
            metrics[f"reward/turn_{k + 1}"].append(sum(values) / len(values))
        # the completions table (log_completions) shows our advantage, one number per row
        logged = self._logs["advantages"]
        m = min(len(logged), len(rewards))
        for j in range(m):
            logged[len(logged) - m + j] = adv.row_advantage(len(rewards) - m + j)

    # ---- loss and KL ---------------------------------------------------------------------------------------

    def _get_per_token_logps_and_entropies(self, model: Any, input_ids: Any, attention_mask: Any, logits_to_keep: int,
                                           batch_size: int | None = None, compute_entropy: bool = False,
                                           **kwargs: Any) -> Any:
        logps, entropies, aux = super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size, compute_entropy=compute_entropy,
            **kwargs,
        )
        if self._capture_logps:  # the policy forward of _compute_loss: reused for kl_to_base
            self._captured_logps = logps.detach()
        return logps, entropies, aux

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> Any:
        self._capture_logps = True
        try:
            loss = super()._compute_loss(model, inputs)
        finally:
            self._capture_logps = False
        policy_logps, self._captured_logps = self._captured_logps, None
        rows = inputs.get(_LOSS_ROWS)
        if rows is not None and self.loss_type in ("grpo", "dr_grpo"):
            kept = rows.sum()
            if 0 < kept < rows.numel():  # a mean over sequences: only over the rows left in the loss
                loss = loss * (rows.numel() / kept)
        self._log_kl_to_base(inputs, policy_logps)
        return loss

    def _log_kl_to_base(self, inputs: dict[str, Any], policy_logps: torch.Tensor | None) -> None:
        base = inputs.get("ref_per_token_logps") if self.kl_source == "ref_model" else inputs.get(_BASE_LOGPS)
        mask = inputs.get(_MODEL_TOKENS)
        if base is None or policy_logps is None or mask is None:
            return
        kl = per_token_kl(policy_logps.float(), base.float())
        mask = mask.to(kl.dtype)
        totals = self.accelerator.reduce(torch.stack([(kl * mask).sum(), mask.sum()]), reduction="sum")
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["kl_to_base"].append((totals[0] / totals[1].clamp(min=1.0)).item())


def _check_args(args: Any) -> None:
    """A GRPOConfig the trainer can honour (grpo_config() builds such; a hand-made one is checked here)."""
    if args.loss_type not in SUPPORTED_LOSS_TYPES:
        raise ValueError(f"loss_type {args.loss_type!r} is not supported by FSTGRPOTrainer; use one of "
                         f"{', '.join(SUPPORTED_LOSS_TYPES)}")
    if args.multi_objective_aggregation != "sum_then_normalize":
        raise ValueError("FSTGRPOTrainer needs multi_objective_aggregation='sum_then_normalize'")
    if args.loss_type == "cispo" and (args.epsilon_high is None or args.epsilon_high < 1.0):
        raise ValueError(f"loss_type 'cispo' with epsilon_high={args.epsilon_high}: TRL would cap every on-policy "
                         "importance weight below 1 (unset means epsilon, 0.2); the paper's cap is 4.0 "
                         "(SlowConfig.grpo_config sets it)")


def _check_groups(group_ids: list[Any], group_size: int) -> None:
    """Every block of ``group_size`` rows must be one problem's group (when the rollout says which)."""
    for g in range(0, len(group_ids), group_size):
        ids = {i for i in group_ids[g: g + group_size] if i is not None}
        if len(ids) > 1:
            raise RolloutOutputError(f"rows {g}..{g + group_size - 1} mix rollout groups {sorted(map(str, ids))}: "
                                     f"rows must come in groups of num_generations={group_size} contiguous rollouts")
