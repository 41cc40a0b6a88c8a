"""The reflection LM clients against a real local HTTP server: requests, token and cost accounting, retries
only where retrying can help, one clear error naming the URL; the config's rules; the policy kind."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from fst_agent.fast import (
    FastConfig,
    ReflectionConfig,
    ReflectionLMError,
    ReflectionLMUnavailable,
    make_reflection_lm,
)
from tests.fast.helpers import FakeOpenAIServer


def _config(server_url: str, **kw) -> ReflectionConfig:
    base = {"kind": "openai", "base_url": server_url, "model": "reflector-7b", "retries": 2, "retry_backoff_s": 0.01}
    return ReflectionConfig.model_validate({**base, **kw})


def test_chat_completion_tokens_cost_and_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("FST_TEST_REFLECTION_KEY", "sk-test-123")
    with FakeOpenAIServer(program=lambda p: f"```\nnew: {p}\n```") as server:
        cfg = _config(server.base_url + "/", api_key_env="FST_TEST_REFLECTION_KEY", temperature=0.5,
                      max_completion_tokens=300, prompt_price_per_1k=2.0, completion_price_per_1k=4.0,
                      extra_body={"top_p": 0.9})
        lm = make_reflection_lm(cfg)
        reply = lm.complete("improve these words")
        lm.close()
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test-123"
    assert request["body"] == {"model": "reflector-7b", "messages": [{"role": "user", "content": "improve these words"}],
                               "max_tokens": 300, "temperature": 0.5, "top_p": 0.9}
    assert reply.text == "```\nnew: improve these words\n```" and reply.model == "stand-in-reflector"
    assert (reply.prompt_tokens, reply.completion_tokens) == (3, 6)  # the server's usage block (words)
    assert reply.cost_usd == pytest.approx((3 * 2.0 + 6 * 4.0) / 1000)
    assert "sk-test-123" not in cfg.model_dump_json()  # the config names the variable, never the key


def test_no_prices_means_unknown_cost_and_no_key_means_no_header():
    with FakeOpenAIServer() as server:
        reply = make_reflection_lm(_config(server.base_url)).complete("```\nx\n```")
    assert reply.cost_usd is None
    assert "Authorization" not in server.requests[0]["headers"]


@pytest.mark.parametrize("failures", [[503, 502], [429], [500, 429]])
def test_5xx_and_429_are_retried(failures):
    with FakeOpenAIServer(script=failures) as server:
        reply = make_reflection_lm(_config(server.base_url)).complete("```\nx\n```")
    assert len(server.requests) == len(failures) + 1 and reply.text


def test_other_http_errors_fail_at_once_naming_the_url():
    with FakeOpenAIServer(script=[400]) as server:
        lm = make_reflection_lm(_config(server.base_url))
        with pytest.raises(ReflectionLMError, match="HTTP 400") as err:
            lm.complete("x")
    assert not isinstance(err.value, ReflectionLMUnavailable)
    assert lm.url in str(err.value) and len(server.requests) == 1


def test_a_server_that_stays_down_is_one_clear_error_after_the_retries():
    with FakeOpenAIServer(fail_after=0) as server:
        lm = make_reflection_lm(_config(server.base_url, retries=3))
        with pytest.raises(ReflectionLMUnavailable, match="after 4 attempts: HTTP 503") as err:
            lm.complete("x")
    assert len(server.requests) == 4 and f"{server.base_url}/chat/completions" in str(err.value)


def test_a_dead_endpoint_names_the_url():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    lm = make_reflection_lm(_config(url, retries=1))
    with pytest.raises(ReflectionLMUnavailable, match=f"reflection LM at {url}/chat/completions did not answer "
                                                      "after 2 attempts: ConnectError"):
        lm.complete("x")


def test_config_errors_name_the_field(monkeypatch):
    with pytest.raises(ValidationError, match="reflection.base_url and reflection.model"):
        ReflectionConfig(kind="openai")
    with pytest.raises(ValidationError, match=r"round\.max_metric_callz\n.*Extra inputs are not permitted"):
        FastConfig.model_validate({"round": {"max_metric_callz": 3}})
    with pytest.raises(ValidationError, match=r"max_candidates \(2\) is below sampling.top_k \(4\)"):
        FastConfig.model_validate({"max_candidates": 2})
    with pytest.raises(ValidationError, match="reflection_prompt_template"):
        FastConfig.model_validate({"reflection_prompt_template": "no placeholders here"})
    monkeypatch.delenv("FST_TEST_MISSING_KEY", raising=False)
    with pytest.raises(ValueError, match="FST_TEST_MISSING_KEY"):
        make_reflection_lm(_config("http://127.0.0.1:1/v1", api_key_env="FST_TEST_MISSING_KEY"))
    with pytest.raises(ValueError, match="policy_complete"):
        make_reflection_lm(ReflectionConfig(kind="policy"))
    with pytest.raises(ValidationError, match="lower max_completion_tokens"):
        FastConfig.model_validate({"reflection": {"kind": "policy", "max_completion_tokens": 4000}})


def test_every_config_field_is_documented():
    from fst_agent.fast import config as module

    for cls in (module.FastConfig, module.ReflectionConfig, module.RoundConfig, module.RescoreConfig,
                module.SamplingConfig, module.FeedbackConfig):
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"


def test_policy_kind_fits_the_tiny_models_window():
    calls = []

    def complete(prompt: str, max_new_tokens: int) -> tuple[str, int, int]:
        calls.append(max_new_tokens)
        return "```\nbetter\n```", 100, 7

    lm = make_reflection_lm(ReflectionConfig(kind="policy"), policy_complete=complete, count_tokens=len)
    assert lm.prompt_budget_tokens == 4096 - 1024 - 32 and lm.count_tokens("abcd") == 4
    reply = lm.complete("p")
    assert (reply.text, reply.prompt_tokens, reply.completion_tokens, reply.cost_usd) == ("```\nbetter\n```", 100, 7, 0.0)
    assert calls == [1024]
    assert make_reflection_lm(ReflectionConfig(kind="openai", base_url="http://x/v1", model="m")).prompt_budget_tokens is None
