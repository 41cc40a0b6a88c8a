"""The advantage estimators as pure functions: hand-computed multi-turn examples, masked rows, dropped
groups, the reductions to the outcome advantage, and the layout onto tokens."""

from __future__ import annotations

import math

import pytest
import torch

from fst_agent.slow.advantages import compute_advantages, outcome_advantages, returns_to_go, token_advantages

# one group of three: rollout 0 has two turns, rollout 1 one, rollout 2 three
FINAL = [1.0, 0.0, 0.5]
TURNS = [[0.1, 0.0], [-0.1], [0.1, 0.1, 0.0]]


def approx(rows, tol=1e-4):
    return [pytest.approx(r, abs=tol) for r in rows]


def test_turn_mix_by_hand():
    """A^O = (F - 0.5) / (0.5 + 1e-4); turn 1 rewards (0.1, -0.1, 0.1): mean 0.0333, std 0.11547;
    turn 2 (0.0, 0.1) over the two rollouts that have one: mean 0.05, std 0.070711; turn 3 has one rollout: 0."""
    adv = compute_advantages(FINAL, TURNS, 3, scheme="turn_mix", turn_weight=0.5)
    a_o = 0.5 / 0.5001                                     # 0.99980
    t1 = [0.0666667 / 0.1155700, -0.1333333 / 0.1155700]  # 0.57685, -1.15370
    t2 = 0.05 / 0.0708107                                  # 0.70611
    expected = [
        [a_o + 0.5 * t1[0], a_o - 0.5 * t2],               # 1.28823, 0.64675
        [-a_o + 0.5 * t1[1]],                              # -1.57665
        [0.5 * t1[0], 0.5 * t2, 0.0],                      # 0.28843, 0.35306, 0
    ]
    assert [len(r) for r in adv.per_turn] == [2, 1, 3]
    assert adv.per_turn == approx(expected)
    assert adv.per_turn == approx([[1.28823, 0.64675], [-1.57665], [0.28843, 0.35306, 0.0]])
    assert adv.in_loss.tolist() == [True, True, True] and adv.dropped_groups == 0


def test_discounted_by_hand():
    """gamma 0.5, w 1: returns-to-go R = (0.6, 1.0), (-0.1,), (0.275, 0.35, 0.5); the baseline is the group's
    whole-episode returns (0.6, -0.1, 0.275): mean 0.258333, std 0.350297."""
    assert returns_to_go(1.0, [0.1, 0.0], gamma=0.5, turn_weight=1.0) == pytest.approx([0.6, 1.0])
    assert returns_to_go(0.5, [0.1, 0.1, 0.0], gamma=0.5, turn_weight=1.0) == pytest.approx([0.275, 0.35, 0.5])
    adv = compute_advantages(FINAL, TURNS, 3, scheme="discounted", turn_weight=1.0, gamma=0.5)
    mean, scale = 0.775 / 3, 0.350297 + 1e-4
    expected = [[(0.6 - mean) / scale, (1.0 - mean) / scale], [(-0.1 - mean) / scale],
                [(0.275 - mean) / scale, (0.35 - mean) / scale, (0.5 - mean) / scale]]
    assert adv.per_turn == approx(expected)
    assert adv.per_turn == approx([[0.97508, 2.11664], [-1.02265], [0.04757, 0.26161, 0.68969]])


def test_outcome_matches_trl_formula_for_every_scaling():
    finals = [1.0, 0.0, 0.25, None, 3.0, 3.0, 1.0, 0.0]
    values = torch.tensor([math.nan if r is None else r for r in finals]).view(2, 4)
    mean = torch.nanmean(values, dim=1, keepdim=True)
    std = torch.tensor([[torch.tensor([1.0, 0.0, 0.25]).std().item()], [torch.tensor([3.0, 3.0, 1.0, 0.0]).std().item()]])
    group = torch.nan_to_num((values - mean) / (std + 1e-4)).view(-1)
    assert torch.allclose(outcome_advantages(finals, 4, "group"), group, atol=1e-6)
    assert torch.allclose(outcome_advantages(finals, 4, "none"), torch.nan_to_num(values - mean).view(-1), atol=1e-6)
    batch_std = torch.tensor([r for r in finals if r is not None]).std()
    assert torch.allclose(outcome_advantages(finals, 4, "batch"),
                          torch.nan_to_num((values - mean) / (batch_std + 1e-4)).view(-1), atol=1e-6)


@pytest.mark.parametrize("scheme", ["outcome", "turn_mix", "discounted"])
def test_masked_rows_get_zero_and_stay_out_of_the_group_statistics(scheme):
    """A row with final reward None: advantage 0 on every turn, out of the loss, and the other rows get exactly
    what they would get in a group without it (here: compared with a group of three)."""
    with_masked = compute_advantages([1.0, None, 0.0, 0.5], [[0.1, 0.2], [0.5], [0.0], [0.1, 0.1]], 4,
                                     scheme=scheme, turn_weight=0.5, gamma=0.9)
    without = compute_advantages([1.0, 0.0, 0.5], [[0.1, 0.2], [0.0], [0.1, 0.1]], 3,
                                 scheme=scheme, turn_weight=0.5, gamma=0.9)
    assert with_masked.per_turn[1] == [0.0]
    assert with_masked.in_loss.tolist() == [True, False, True, True]
    assert with_masked.scorable.tolist() == [True, False, True, True]
    kept = [with_masked.per_turn[i] for i in (0, 2, 3)]
    assert kept == [approx(r, 1e-6) for r in without.per_turn]


def test_equal_reward_groups_are_dropped_when_asked():
    finals = [1.0, 1.0, 1.0, 1.0,    # all equal: dropped
              1.0, 0.0, 1.0, 0.0,    # signal: kept
              None, None, None, 1.0]  # one scorable rollout: no baseline, dropped
    turns = [[0.0]] * 12
    adv = compute_advantages(finals, turns, 4, scheme="outcome", drop_equal_groups=True)
    assert adv.group_kept.tolist() == [False, True, False] and adv.dropped_groups == 2
    assert adv.in_loss.tolist() == [False] * 4 + [True] * 4 + [False] * 4
    assert all(a == [0.0] for i, a in enumerate(adv.per_turn) if i not in range(4, 8))
    kept_anyway = compute_advantages(finals, turns, 4, scheme="outcome", drop_equal_groups=False)
    assert kept_anyway.group_kept.all() and kept_anyway.in_loss.tolist() == [f is not None for f in finals]


def test_what_counts_as_equal_depends_on_the_scheme():
    """Equal final rewards but different turn rewards: a turn_mix signal only when turn_weight != 0; equal final
    rewards reached in different numbers of turns: a discounted signal when gamma < 1."""
    finals, turns = [1.0, 1.0], [[0.1, 0.0], [0.0]]
    assert compute_advantages(finals, turns, 2, scheme="turn_mix", turn_weight=0.5, drop_equal_groups=True).group_kept.item()
    assert not compute_advantages(finals, turns, 2, scheme="turn_mix", turn_weight=0.0, drop_equal_groups=True).group_kept.item()
    assert not compute_advantages(finals, turns, 2, scheme="outcome", drop_equal_groups=True).group_kept.item()
    flat = [[0.0, 0.0], [0.0]]
    assert compute_advantages(finals, flat, 2, scheme="discounted", gamma=0.9, turn_weight=0.0, drop_equal_groups=True).group_kept.item()
    assert not compute_advantages(finals, flat, 2, scheme="discounted", gamma=1.0, turn_weight=0.0, drop_equal_groups=True).group_kept.item()


def test_reductions_to_the_outcome_advantage():
    """turn_mix with w = 0, and discounted with w = 0 and gamma = 1, equal outcome for any number of turns;
    one turn with no turn reward equals outcome exactly under every scheme (float32 bit for bit)."""
    finals = [1.0, 0.0, 0.25, 0.7, 0.0, 1.0, None, 0.3]
    turns = [[0.3, -0.1], [0.0], [0.2, 0.2, 0.1], [0.0, 0.5], [0.1], [0.0, 0.0], [0.4], [0.0, 0.0, 0.0, 0.0]]
    outcome = compute_advantages(finals, turns, 4, scheme="outcome").per_turn
    assert compute_advantages(finals, turns, 4, scheme="turn_mix", turn_weight=0.0).per_turn == outcome
    assert compute_advantages(finals, turns, 4, scheme="discounted", turn_weight=0.0, gamma=1.0).per_turn == outcome
    single = [[0.0]] * 8
    expected = outcome_advantages(finals, 4).tolist()
    for scheme in ("outcome", "turn_mix", "discounted"):
        got = compute_advantages(finals, single, 4, scheme=scheme, turn_weight=0.7, gamma=0.5).per_turn
        assert [row[0] for row in got] == expected, scheme


def test_token_layout_puts_each_turn_on_its_span():
    per_turn = [[1.5, -0.5], [2.0]]
    spans = [[[0, 3], [5, 7]], [[0, 2]]]
    out = token_advantages(per_turn, spans, torch.tensor([0.25, -1.0]), 8)
    assert out.shape == (2, 8) and out.dtype == torch.float32
    assert out[0].tolist() == [1.5, 1.5, 1.5, 0.25, 0.25, -0.5, -0.5, 0.25]  # observation/padding keep the fill
    assert out[1].tolist() == [2.0, 2.0] + [-1.0] * 6
    with pytest.raises(ValueError, match="row 1: 1 turn spans but 2 turn advantages"):
        token_advantages([[1.0], [1.0, 2.0]], [[[0, 1]], [[0, 1]]], torch.zeros(2), 4)
    with pytest.raises(ValueError, match=r"row 0: turn span \[2, 9\] outside the completion"):
        token_advantages([[1.0]], [[[2, 9]]], torch.zeros(1), 4)


def test_bad_groups_are_named():
    with pytest.raises(ValueError, match="5 rollouts do not split into groups of 2"):
        compute_advantages([1.0] * 5, [[0.0]] * 5, 2)
    with pytest.raises(ValueError, match="unknown advantage scheme 'best'"):
        compute_advantages([1.0] * 2, [[0.0]] * 2, 2, scheme="best")  # type: ignore[arg-type]
