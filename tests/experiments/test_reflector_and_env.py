"""The stand-in reflector (over the real OpenAI-compatible client path), the fst-rules environment and the
experiment config: fast checks, no model."""

from __future__ import annotations

import pytest

from fst_agent.experiments.config import load_mini_config
from fst_agent.experiments.reflector import STAND_IN_MODEL, StandInReflectionServer, StandInReflector
from fst_agent.experiments.rule_env import rules_env_class
from fst_agent.fast import make_reflection_lm
from fst_agent.fast.config import ReflectionConfig
from fst_agent.loop.config import ConfigError


@pytest.fixture(scope="module")
def env_cls():
    return rules_env_class()


def _prompt(instruction: str, pairs: list[tuple[str, str]]) -> str:
    """A reflection prompt shaped like gepa's template over our reflective dataset's verdict lines."""
    examples = "".join(
        f"# Example {i + 1}\n## Feedback\n- test 0 (public): wrong_answer; input {given!r}; expected {exp!r}, got 'a b'\n"
        for i, (given, exp) in enumerate(pairs))
    return f"I provided an assistant with the following instructions:\n```\n{instruction}\n```\n\n```\n{examples}```\n"


def test_the_reflector_infers_the_rule_from_feedback_over_http(env_cls):
    reflector = StandInReflector(env_cls.rule_ids(), env_cls.rule_statement, env_cls.apply_rule, accuracy=1.0)
    pairs = [(x, env_cls.apply_rule("shift:2", x)) for x in ("c a t", "x y z q", "m o p")]
    with StandInReflectionServer(reflector) as server:
        lm = make_reflection_lm(ReflectionConfig(kind="openai", base_url=server.base_url, model=STAND_IN_MODEL))
        reply = lm.complete(_prompt("Transform the letters.\nRule: Write every letter twice.", pairs))
        lm.close()
    assert reply.text.split("```")[1].strip() == f"Transform the letters.\nRule: {env_cls.rule_statement('shift:2')}"
    assert reply.prompt_tokens and reply.model == STAND_IN_MODEL
    assert reflector.report()["realized_accuracy"] == 1.0 and reflector.decisions[0].consistent == ["shift:2"]


def test_the_accuracy_knob_decides_how_often_the_rule_is_right(env_cls):
    pairs = [(x, env_cls.apply_rule("reverse", x)) for x in ("c a t", "d o g s")]
    never = StandInReflector(env_cls.rule_ids(), env_cls.rule_statement, env_cls.apply_rule, accuracy=0.0)
    half = StandInReflector(env_cls.rule_ids(), env_cls.rule_statement, env_cls.apply_rule, accuracy=0.5, seed=3)
    for _ in range(200):
        assert env_cls.rule_statement("reverse") not in never.reflect(_prompt("Go.", pairs))
        half.reflect(_prompt("Go.", pairs))
    assert never.report()["realized_accuracy"] == 0.0
    assert 0.4 < half.report()["realized_accuracy"] < 0.6
    # no example in the feedback: nothing to infer, the instruction comes back unchanged
    assert never.reflect(_prompt("Go.", [])).split("```")[1].strip() == "Go."
    with pytest.raises(ValueError, match="within"):
        StandInReflector(["reverse"], str, lambda r, x: x, accuracy=1.5)


def test_tasks_hide_the_rule_and_are_deterministic(env_cls):
    cfg = env_cls.config_class(rule="reverse", train_tasks=8, eval_tasks=4)
    train = env_cls.load_tasks("train", cfg)
    assert train == env_cls.load_tasks("train", cfg) and len(train) == 8
    assert {t.id for t in train}.isdisjoint(t.id for t in env_cls.load_tasks("test", cfg))
    assert all("reverse" not in t.prompt and t.prompt.startswith("Input: ") for t in train)
    with pytest.raises(ValueError, match="unknown rule 'spin'"):
        env_cls.config_class(rule="spin")


def test_experiment_config_errors_name_the_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seeds: 1\nstage_stepz: 3\nreflector_accuracies: [1.2]\n")
    with pytest.raises(ConfigError) as err:
        load_mini_config(path)
    assert "stage_stepz: unknown field" in str(err.value) and "reflector_accuracies" in str(err.value)
    with pytest.raises(ConfigError, match="arms"):
        load_mini_config(path.with_name("ok.yaml") if path.with_name("ok.yaml").write_text("seeds: 1\n") else path,
                         arms=["fst", "sgd"])
