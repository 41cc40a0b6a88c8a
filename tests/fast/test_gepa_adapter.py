"""The gepa adapter: gepa's own engine (``gepa.optimize``, the reference implementation) runs on fst-agent's
evaluator and reflective dataset and learns the same rules from the traces."""

from __future__ import annotations

import gepa

from fst_agent.fast import FeedbackConfig
from fst_agent.fast.gepa_bridge import TrajectoryAdapter
from fst_agent.fast.population import render_components
from fst_agent.fast.reflective_dataset import build_records
from fst_agent.types import Context
from tests.fast.helpers import TableEvaluator, reflect_program, rule_reward
from tests.fast.test_optimizer import RULES, TRAIN, VAL


class _Quiet:
    def log(self, *args, **kwargs) -> None:
        pass


def test_gepa_optimize_runs_on_our_adapter():
    evaluator = TableEvaluator(rule_reward(RULES))

    def evaluate(candidate, tasks):
        context = Context(id="gepa", text=render_components(candidate))
        return evaluator.evaluate([(context, t) for t in tasks])

    adapter = TrajectoryAdapter(evaluate, lambda trajs, tasks: build_records(trajs, tasks, FeedbackConfig()))
    result = gepa.optimize(seed_candidate={"system_prompt": "Solve it."}, trainset=TRAIN, valset=VAL, adapter=adapter,
                           reflection_lm=reflect_program, max_metric_calls=60, logger=_Quiet(), seed=0)
    assert result.val_aggregate_scores[0] == 0.0 and max(result.val_aggregate_scores) == 1.0
    assert all(rule in result.best_candidate["system_prompt"] for rule in RULES.values())
