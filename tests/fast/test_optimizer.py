"""The fast optimizer on constructed rewards: rounds within budget, the reflective step, re-scoring after the
weights move, the recent-trace shortcut, masked scores, failure without loss, and exact resume."""

from __future__ import annotations

import json

import pytest

from fst_agent.fast import (
    FastConfig,
    FastOptimizer,
    Population,
    ReflectionLMUnavailable,
    make_reflection_lm,
)
from fst_agent.traces import TraceStore
from tests.fast.helpers import FakeOpenAIServer, TableEvaluator, policy_fn, rule_reward, task, trajectory

RULES = {"a": "alpha answers need a hat", "b": "beta answers need a cape", "c": "gamma answers need boots"}
TRAIN = [task(i, k) for k in "abc" for i in range(2)]
VAL = [task(i + 10, k) for k in "abc" for i in range(2)]


def _setup(overrides: dict | None = None, *, evaluator=None, store=None, seed_text="Solve it."):
    cfg = FastConfig.model_validate({"round": {"minibatch_size": 1, "max_reflection_calls": 1,
                                               "max_metric_calls": 40}, **(overrides or {})})
    pop = Population.seed(seed_text)
    complete, calls = policy_fn()
    lm = make_reflection_lm(cfg.reflection, policy_complete=complete)
    ev = evaluator or TableEvaluator(rule_reward(RULES))
    return cfg, pop, ev, FastOptimizer(cfg, pop, ev, lm, trace_store=store), calls


def test_rounds_learn_the_rules_from_the_traces(tmp_path):
    store = TraceStore(tmp_path)
    cfg, pop, ev, opt, calls = _setup(store=store)
    reports = [opt.run_round(TRAIN, VAL, policy_version=0) for _ in range(3)]
    best = [reports[0].best_val_before] + [r.best_val_after for r in reports]
    assert best == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])  # one rule per round, each from a traceback
    final = pop.get(reports[-1].top_k[0])
    assert all(rule in final.text for rule in RULES.values())

    first = reports[0]
    assert first.rescore is not None and first.rescore.rescored == ["cand-0000"]  # the seed's first evaluation
    assert first.rescore.metric_calls == len(VAL)
    assert (first.proposals, len(first.accepted), first.reflection_calls) == (1, 1, 1)
    assert first.metric_calls == 1 + 1 + len(VAL)  # parent minibatch, child minibatch, validation
    assert first.prompt_tokens > 0 and first.cost_usd == 0.0 and first.stop_reason == "reflection_budget"
    assert first.population_size == 2 and first.frontier_size == 1

    # lineage: parent and the feedback that produced the child, and the reflection call in the trace store
    child = pop.get(first.accepted[0])
    assert child.parent_ids == ["cand-0000"] and child.round_created == 1 and child.origin == "reflection"
    assert "AssertionError: " in child.feedback
    (record,) = [r for r in store.reflections(candidate_id=child.id, accepted=True) if r.child_id == child.id]
    assert record.reflection_id in child.reflection_ids and record.round == 1 and record.parent_id == "cand-0000"
    assert record.prompt == calls[0][0] and "## Feedback" in record.prompt and "Rule: " in record.reply
    assert record.proposed_text == child.components["system_prompt"] and record.model == "policy"
    assert record.metadata["scores_before"] == [0.0] and record.metadata["scores_after"] == [1.0]
    assert len(store.reflections()) == 3 and store.reflections(round=2)[0].outcome == "accepted"
    # the validation episodes ran under the child's final id
    assert (child.id, VAL[0].id) in ev.calls
    assert opt.totals["metric_calls"] == sum(r.metric_calls for r in reports)
    store.close()


@pytest.mark.parametrize("budget", [6, 13, 20])
def test_a_round_never_exceeds_its_metric_budget(budget):
    cfg, pop, ev, opt, _ = _setup({"round": {"minibatch_size": 2, "max_metric_calls": budget,
                                             "max_reflection_calls": 10}})
    opt.rescore(None, VAL)
    n0 = len(ev.calls)
    report = opt.run_round(TRAIN, VAL)
    assert report.metric_calls == len(ev.calls) - n0 <= budget
    # the worst case of one iteration is 2 + 2 + 6 = 10
    assert report.stop_reason == ("metric_budget" if budget < 10 else report.stop_reason)
    assert (report.iterations == 0) == (budget < 10)


def test_perfect_parents_are_skipped_and_the_iteration_cap_holds():
    cfg, pop, ev, opt, calls = _setup(seed_text=" ".join(RULES.values()) + " Solve it.",
                                      overrides={"round": {"max_iterations": 3, "minibatch_size": 1}})
    report = opt.run_round(TRAIN, VAL)
    assert (report.iterations, report.skipped, report.reflection_calls, report.stop_reason) == (3, 3, 0, "max_iterations")
    assert calls == []


def test_rescore_after_the_weights_move():
    weights = {"v": 0}

    def reward(text, t):  # under v0 the longer context wins, under v1 the shorter one
        n = len(text)
        return (n / 100 if weights["v"] == 0 else 1 - n / 100), None

    cfg, pop, ev, opt, _ = _setup({"sampling": {"top_k": 2}}, evaluator=TableEvaluator(reward), seed_text="x" * 5)
    for text in ["x" * 10, "x" * 20, "x" * 30]:
        pop.add({"system_prompt": text}, parent_ids=["cand-0000"])
    first = opt.rescore(0, VAL)
    assert sorted(first.rescored) == ["cand-0000", "cand-0001", "cand-0002", "cand-0003"]
    assert first.top_k_after == ["cand-0003", "cand-0002"]

    weights["v"] = 1
    second = opt.rescore(1)  # the last validation set is remembered
    assert second.policy_version_before == 0 and second.metric_calls == 4 * len(VAL)
    assert second.kendall_tau == pytest.approx(-1.0)  # the order reversed
    assert second.top_k_changed and second.top_k_after == ["cand-0000", "cand-0001"]
    assert [c.id for c in pop.top_k(2)] == ["cand-0000", "cand-0001"]

    # a budget for two candidates: the best-ranked two are re-scored, the rest leave the ranking
    weights["v"] = 0
    ev.calls.clear()
    cfg.rescore.max_metric_calls = 2 * len(VAL)
    third = opt.rescore(2)
    assert third.rescored == ["cand-0000", "cand-0001"] and sorted(third.stale) == ["cand-0002", "cand-0003"]
    assert {c for c, _ in ev.calls} == {"cand-0000", "cand-0001"}
    assert pop.ranking().order == ["cand-0001", "cand-0000"] and third.kendall_tau == pytest.approx(-1.0)
    metrics = third.metrics()
    assert metrics["fast/rescore/metric_calls"] == 12 and metrics["fast/rescore/top_k_changed"] == 1.0


def test_rescore_before_any_validation_set_is_deferred_and_never_scored_candidates_always_run():
    cfg, pop, ev, opt, _ = _setup({"rescore": {"max_metric_calls": 0}})
    deferred = opt.rescore(5)
    assert deferred.deferred and deferred.metric_calls == 0 and pop.policy_version == 5
    report = opt.run_round(TRAIN, VAL, policy_version=5)
    assert report.rescore.rescored == ["cand-0000"]  # budget 0, but a first evaluation is never skipped
    assert report.best_val_before == 0.0


def test_recent_traces_of_the_parent_replace_its_minibatch_run():
    cfg, pop, ev, opt, _ = _setup({"round": {"minibatch_size": 2, "max_reflection_calls": 1}})
    opt.rescore(0, VAL)
    seed = pop.get("cand-0000").context()
    recent = [trajectory(seed, t, 0.0, error=f"AssertionError: {RULES[t.data['kind']]}", episode_id=f"rl-{t.id}-{g}")
              for t in TRAIN[:2] for g in range(2)]
    recent.append(trajectory(seed, task(99, "a"), 0.0))  # not a training task: ignored
    ev.calls.clear()
    report = opt.run_round(TRAIN, VAL, policy_version=0, recent=recent)
    # no episode of the parent: only the child's minibatch and validation ran
    assert all(c != "cand-0000" for c, _ in ev.calls)
    assert report.metric_calls == 2 + len(VAL) and report.accepted == ["cand-0001"]
    assert RULES["a"] in pop.get("cand-0001").text


def test_masked_episodes_are_missing_not_zero_in_the_minibatch_test():
    def reward(text, t):
        if "Rule" in text and t.id == "a-0":
            return None, None  # the child's episode on a-0 hits a sandbox error
        return (1.0, None) if RULES[t.data["kind"]] in text else (0.0, f"AssertionError: {RULES[t.data['kind']]}")

    cfg, pop, ev, opt, _ = _setup({"round": {"minibatch_size": 6, "max_metric_calls": 100}},
                                  evaluator=TableEvaluator(reward))
    report = opt.run_round(TRAIN, VAL)
    # parent 0 on all six; child masked on a-0, 1 on the other five: 5 > 0 on the five both scored
    assert report.accepted == ["cand-0001"]
    assert pop.ranking().means["cand-0001"] == 1.0


def test_a_dead_reflection_endpoint_stops_the_round_but_keeps_what_was_accepted(tmp_path):
    with FakeOpenAIServer(fail_after=1) as server:
        cfg = FastConfig.model_validate({
            "round": {"minibatch_size": 1, "max_reflection_calls": 3, "max_metric_calls": 100},
            "reflection": {"kind": "openai", "base_url": server.base_url, "model": "m", "retries": 1,
                           "retry_backoff_s": 0.01},
        })
        pop = Population.seed("Solve it.")
        opt = FastOptimizer(cfg, pop, TableEvaluator(rule_reward(RULES)), make_reflection_lm(cfg.reflection))
        with pytest.raises(ReflectionLMUnavailable, match=f"{server.base_url}/chat/completions") as err:
            opt.run_round(TRAIN, VAL)
    report = err.value.report
    assert report.accepted == ["cand-0001"] and report.stop_reason == "error" and "503" in report.error
    assert len(pop) == 2 and pop.get("cand-0001").val_scores
    pop.save(tmp_path)
    assert len(Population.load(tmp_path)) == 2


def _lineage(pop: Population) -> list[tuple]:
    return [(c.id, c.text, tuple(c.parent_ids), c.round_created,
             tuple(sorted((t, e.score) for t, e in c.val_scores.items()))) for c in pop.all_candidates]


def test_a_resumed_run_proposes_exactly_what_an_uninterrupted_one_would(tmp_path):
    overrides = {"round": {"minibatch_size": 1, "max_reflection_calls": 1, "max_metric_calls": 30},
                 "max_candidates": 3, "sampling": {"top_k": 2}}
    _, straight, ev, opt, _ = _setup(overrides)
    opt.run_round(TRAIN, VAL, policy_version=0)
    after_first = len(ev.calls)
    for _ in range(2):
        opt.run_round(TRAIN, VAL, policy_version=0)
    straight_calls = ev.calls[after_first:]
    # the cap: the fourth candidate retired the worst (the seed), which stays in the file for lineage
    assert len(straight) == 3 and straight.get("cand-0000").retired and len(straight.all_candidates) == 4

    _, first, _, opt1, _ = _setup(overrides)
    opt1.run_round(TRAIN, VAL, policy_version=0)
    first.save(tmp_path)
    state = json.loads(json.dumps(opt1.state_dict()))  # what a checkpoint holds

    def resume(with_state: bool) -> tuple[Population, FastOptimizer, TableEvaluator]:
        cfg, _, ev, _, _ = _setup(overrides)
        pop = Population.load(tmp_path)
        o = FastOptimizer(cfg, pop, ev, make_reflection_lm(cfg.reflection, policy_complete=policy_fn()[0]))
        if with_state:
            o.load_state_dict(state)
        for _ in range(2):
            o.run_round(TRAIN, VAL, policy_version=0)
        return pop, o, ev

    resumed, opt2, ev2 = resume(True)
    assert ev2.calls == straight_calls  # the same episodes, in the same order
    assert _lineage(resumed) == _lineage(straight)
    assert opt2.totals == opt.totals and opt2.round == 3
    # without the optimizer state the same population draws other minibatches (the test can fail)
    _, _, ev3 = resume(False)
    assert ev3.calls != straight_calls


def test_policy_reflection_prompts_fit_the_tiny_models_window():
    """Long tracebacks and a minibatch of three: every prompt the policy gets fits 4096 positions (counted by
    a real tokenizer), and the rule at the end of the traceback still gets through."""
    from tests.policy.rollout_helpers import chatml_tokenizer

    tok = chatml_tokenizer()
    count = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    noise = "".join(f'  File "lib{i}.py", line {i}, in helper_{i}\n' for i in range(300))

    def reward(text, t):
        rule = RULES[t.data["kind"]]
        return (1.0, None) if rule in text else (0.0, f"{noise}AssertionError: {rule}")

    cfg = FastConfig.model_validate({"round": {"minibatch_size": 3, "max_reflection_calls": 1,
                                               "max_metric_calls": 40}})
    complete, calls = policy_fn()
    opt = FastOptimizer(cfg, Population.seed("Solve it."), TableEvaluator(reward),
                        make_reflection_lm(cfg.reflection, policy_complete=complete, count_tokens=count))
    report = opt.run_round(TRAIN, VAL)
    (prompt, max_new), = calls
    assert max_new == 1024 and count(prompt) <= 4096 - 1024 - 32 < count(noise) * 3
    assert report.accepted and report.best_val_after > 0


def test_an_evaluator_failure_after_reflecting_still_stores_the_reflection(tmp_path):
    base = TableEvaluator(rule_reward(RULES))

    class Breaks:
        def evaluate(self, pairs):
            if any(c.id.startswith("proposal-") for c, _ in pairs):
                raise RuntimeError("rollout engine crashed")
            return base.evaluate(pairs)

    store = TraceStore(tmp_path)
    _, pop, _, opt, _ = _setup(evaluator=Breaks(), store=store)
    with pytest.raises(RuntimeError, match="rollout engine crashed") as err:
        opt.run_round(TRAIN, VAL)
    assert err.value.report.reflection_calls == 1 and err.value.report.error.startswith("RuntimeError")
    (record,) = store.reflections()
    assert record.outcome == "error" and record.child_id is None and "Rule: " in record.reply
    assert len(pop) == 1
    store.close()
