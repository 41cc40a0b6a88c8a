"""Turn-level credit: per-token advantages (B, T) from per-episode final rewards and per-turn rewards.

Pure functions over the whole (all-process) generation batch; the trainer gathers, calls them, slices its
rows and lays them onto tokens. Rows come in groups of ``G`` contiguous rollouts of one problem (TRL's
order), whatever fast-weight context each rollout used: every statistic below is per problem over all
``G`` rollouts of its group (the FST rule).

Notation, for rollout ``i`` of group ``g``: final reward ``F_i`` (None = masked: a sandbox_error /
env_error episode), turn rewards ``r_{i,k}`` for its turns ``k = 0 .. K_i - 1``, turn weight ``w``,
discount ``gamma``, ``eps = 1e-4`` (TRL's). ``norm_g(x_i) = (x_i - mean_g x) / (std_g x + eps)``, mean and
(Bessel-corrected) std over the group's *scorable* rollouts — with TRL's ``scale_rewards="batch"`` the std
is over the whole batch instead, with ``"none"`` there is no division.

Schemes (``AdvantageConfig.scheme``), the advantage of every model token of turn ``k`` of rollout ``i``:

* ``outcome``:    ``A_{i,k} = A^O_i = norm_g(F_i)``                                     — TRL's own advantage
* ``turn_mix``:   ``A_{i,k} = A^O_i + w * norm_{g,k}(r_{i,k})``                          — MT-GRPO-style; the turn
  term is normalized over the group's scorable rollouts that *have* a turn ``k`` (fewer than two: 0)
* ``discounted``: ``A_{i,k} = (R_{i,k} - mean_g R_{.,0}) / (std_g R_{.,0} + eps)`` with the return-to-go
  ``R_{i,k} = sum_{j=k}^{K_i-1} gamma^(j-k) * w * r_{i,j} + gamma^(K_i-1-k) * F_i``: each turn is credited with
  what followed it, against the group's mean whole-episode return (``R_{i,0}``; ``F_i`` for an episode
  with no turn)

Reductions: one turn and zero turn rewards give exactly TRL's advantages under every scheme (the same
float32 operations in the same order); ``turn_mix`` with ``w = 0`` and ``discounted`` with ``w = 0,
gamma = 1`` equal ``outcome`` for any number of turns.

Masked rows get advantage 0 and are left out of every mean and std. A group has no learning signal when
every advantage of its scorable rollouts is zero in exact arithmetic (``outcome``: equal ``F``; ``turn_mix``:
equal ``F`` and, when ``w != 0``, equal rewards at every turn index; ``discounted``: equal returns-to-go
everywhere) or when it has fewer than two scorable rollouts; with ``drop_equal_groups`` such a group is
dropped (its rows leave the loss).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

Scheme = Literal["outcome", "turn_mix", "discounted"]
ScaleRewards = Literal["group", "batch", "none"]

#: TRL's constant in ``(r - mean) / (std + eps)``
EPS = 1e-4

__all__ = [
    "EPS",
    "GroupAdvantages",
    "Scheme",
    "ScaleRewards",
    "compute_advantages",
    "outcome_advantages",
    "returns_to_go",
    "token_advantages",
]


def _nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    from trl.trainer.utils import nanstd  # TRL's own (Bessel-corrected, NaN for fewer than two values)

    return nanstd(x, dim=dim)


def _normalize(values: torch.Tensor, group_size: int, scale: ScaleRewards) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values - group mean)`` divided by the group/batch std (+eps) or nothing; NaN rows stay NaN.

    Exactly TRL 1.16's ``sum_then_normalize`` arithmetic (``_generate_and_score_completions``). Also returns
    the std used, for the caller's zero-std bookkeeping."""
    grouped = values.view(-1, group_size)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(group_size, dim=0)
    if scale in ("group", "none"):
        std = _nanstd(grouped, dim=1).repeat_interleave(group_size, dim=0) if group_size > 1 else torch.zeros_like(values)
    elif scale == "batch":
        std = _nanstd(values).expand_as(values) if values.numel() > 1 else torch.zeros_like(values)
    else:
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', got {scale!r}")
    centred = values - mean
    if scale != "none":
        centred = centred / (std + EPS)
    return centred, std


def _check_groups(n: int, group_size: int) -> None:
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if n % group_size:
        raise ValueError(f"{n} rollouts do not split into groups of {group_size}")


def outcome_advantages(final_rewards: Sequence[float | None], group_size: int,
                       scale_rewards: ScaleRewards = "group") -> torch.Tensor:
    """``A^O``: TRL's advantage of each rollout, float32 (N,); masked (None) rows 0."""
    _check_groups(len(final_rewards), group_size)
    values = torch.tensor([math.nan if r is None else float(r) for r in final_rewards], dtype=torch.float32)
    advantages, _ = _normalize(values, group_size, scale_rewards)
    return torch.nan_to_num(advantages, nan=0.0)


def returns_to_go(final_reward: float, turn_rewards: Sequence[float], *, gamma: float, turn_weight: float) -> list[float]:
    """``R_{i,k}`` for every turn ``k`` of one rollout (see the module doc); ``[]`` for a rollout with no turn."""
    out: list[float] = []
    acc = float(final_reward)
    for r in reversed(turn_rewards):  # R_k = w r_k + gamma R_{k+1}, with the final reward after the last turn
        acc = turn_weight * float(r) + acc if not out else turn_weight * float(r) + gamma * acc
        out.append(acc)
    return out[::-1]


@dataclass(frozen=True)
class GroupAdvantages:
    """Advantages of a whole generation batch (N rows, N/G groups).

    ``per_turn[i][k]``: the advantage of turn ``k`` of row ``i`` (0 for masked or dropped rows);
    ``outcome``: ``A^O`` (N,); ``scorable``: rows with a final reward; ``group_kept``: groups left in the
    loss (N/G,); ``in_loss``: scorable rows of kept groups (N,)."""

    per_turn: list[list[float]]
    outcome: torch.Tensor
    scorable: torch.Tensor
    group_kept: torch.Tensor
    in_loss: torch.Tensor

    @property
    def dropped_groups(self) -> int:
        return int((~self.group_kept).sum())

    def row_advantage(self, i: int) -> float:
        """One number per row for logs: the mean of its turns' advantages (``A^O`` for a row with no turn)."""
        turns = self.per_turn[i]
        return sum(turns) / len(turns) if turns else float(self.outcome[i])


def _uniform(values: list[float]) -> bool:
    return all(math.isclose(v, values[0], rel_tol=1e-9, abs_tol=1e-12) for v in values[1:])


def _no_signal(rows: list[int], scheme: Scheme, finals: Sequence[float | None], turns: list[list[float]],
               returns: list[list[float]], turn_weight: float) -> bool:
    """Whether every advantage of these (scorable) rows is zero in exact arithmetic (see the module doc)."""
    if len(rows) < 2:
        return True
    if scheme == "discounted":  # every return-to-go equal to the others (hence to the baseline)
        return _uniform([v for i in rows for v in (returns[i] or [float(finals[i])])])  # type: ignore[arg-type]
    if not _uniform([float(finals[i]) for i in rows]):  # type: ignore[arg-type]
        return False
    if scheme == "turn_mix" and turn_weight != 0:
        width = max(len(turns[i]) for i in rows)
        return all(_uniform([turns[i][k] for i in rows if len(turns[i]) > k] or [0.0]) for k in range(width))
    return True


def compute_advantages(
    final_rewards: Sequence[float | None],
    turn_rewards: Sequence[Sequence[float]],
    group_size: int,
    *,
    scheme: Scheme = "outcome",
    turn_weight: float = 0.0,
    gamma: float = 1.0,
    scale_rewards: ScaleRewards = "group",
    drop_equal_groups: bool = False,
) -> GroupAdvantages:
    """Per-turn advantages of every row under ``scheme`` (formulas in the module doc)."""
    n = len(final_rewards)
    _check_groups(n, group_size)
    if len(turn_rewards) != n:
        raise ValueError(f"{len(turn_rewards)} turn-reward lists for {n} rollouts")
    scorable = torch.tensor([r is not None for r in final_rewards], dtype=torch.bool)
    outcome = outcome_advantages(final_rewards, group_size, scale_rewards)
    turns = [list(map(float, t)) for t in turn_rewards]
    per_turn: list[list[float]] = [[0.0] * len(t) for t in turns]
    returns: list[list[float]] = [[] for _ in range(n)]

    if scheme == "outcome":
        for i in range(n):
            per_turn[i] = [float(outcome[i])] * len(turns[i])
    elif scheme == "turn_mix":
        width = max((len(t) for t in turns), default=0)
        table = torch.full((n, max(width, 1)), math.nan, dtype=torch.float32)
        for i, t in enumerate(turns):
            if scorable[i] and t:
                table[i, : len(t)] = torch.tensor(t, dtype=torch.float32)
        turn_adv = torch.stack([_normalize(table[:, k], group_size, scale_rewards)[0] for k in range(table.shape[1])], dim=1)
        turn_adv = torch.nan_to_num(turn_adv, nan=0.0)
        for i in range(n):
            per_turn[i] = [float(outcome[i] + turn_weight * turn_adv[i, k]) for k in range(len(turns[i]))]
    elif scheme == "discounted":
        returns = [returns_to_go(r, t, gamma=gamma, turn_weight=turn_weight) if r is not None else [] for r, t in zip(final_rewards, turns, strict=True)]
        start = torch.tensor(
            [math.nan if r is None else (returns[i][0] if returns[i] else float(r)) for i, r in enumerate(final_rewards)],
            dtype=torch.float32,
        )
        grouped = start.view(-1, group_size)
        mean = torch.nanmean(grouped, dim=1).repeat_interleave(group_size, dim=0)
        _, std = _normalize(start, group_size, scale_rewards)
        for i in range(n):
            if not scorable[i]:
                continue
            rtg = torch.tensor(returns[i], dtype=torch.float32)
            adv = rtg - mean[i]
            if scale_rewards != "none":
                adv = adv / (std[i] + EPS)
            per_turn[i] = torch.nan_to_num(adv, nan=0.0).tolist()
    else:
        raise ValueError(f"unknown advantage scheme {scheme!r} (outcome, turn_mix, discounted)")

    groups = n // group_size
    kept = torch.ones(groups, dtype=torch.bool)
    if drop_equal_groups:
        for g in range(groups):
            rows = [i for i in range(g * group_size, (g + 1) * group_size) if scorable[i]]
            kept[g] = not _no_signal(rows, scheme, final_rewards, turns, returns, turn_weight)
    in_loss = scorable & kept.repeat_interleave(group_size)
    for i in range(n):
        if not in_loss[i]:
            per_turn[i] = [0.0] * len(turns[i])
    outcome = torch.where(in_loss, outcome, torch.zeros_like(outcome))
    return GroupAdvantages(per_turn=per_turn, outcome=outcome, scorable=scorable, group_kept=kept, in_loss=in_loss)


def token_advantages(
    per_turn: Sequence[Sequence[float]],
    turn_spans: Sequence[Sequence[Sequence[int]]],
    row_fill: torch.Tensor,
    length: int,
) -> torch.Tensor:
    """Lay per-turn advantages onto the right-padded completion tokens: (B, ``length``) float32.

    Every position of row ``b`` starts at ``row_fill[b]`` (its outcome advantage: what observation and
    padding tokens carry, though the loss masks them), then turn ``k``'s span ``[start, end)`` of
    ``completion_ids`` gets ``per_turn[b][k]``."""
    if not (len(per_turn) == len(turn_spans) == row_fill.numel()):
        raise ValueError(f"rows disagree: {len(per_turn)} advantage rows, {len(turn_spans)} span rows, {row_fill.numel()} fills")
    out = row_fill.to(torch.float32).reshape(-1, 1).repeat(1, length)
    for b, (advs, spans) in enumerate(zip(per_turn, turn_spans, strict=True)):
        if len(advs) != len(spans):
            raise ValueError(f"row {b}: {len(spans)} turn spans but {len(advs)} turn advantages (one per turn)")
        for adv, span in zip(advs, spans, strict=True):
            start, end = int(span[0]), int(span[1])
            if not 0 <= start <= end <= length:
                raise ValueError(f"row {b}: turn span {list(span)} outside the completion (length {length})")
            out[b, start:end] = adv
    return out
