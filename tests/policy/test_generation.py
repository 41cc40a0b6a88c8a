"""Generation backends: TransformersGenerator on a random tiny Qwen2 (left padding, EOS, logprobs, top_k off),
the turn queue's batching, and the vLLM generator without vLLM (error message, request building, a server
client against a local fake /v1/completions)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from fst_agent.policy.config import RolloutConfig, SamplingConfig
from fst_agent.policy.generation import (
    Generation,
    GenerationRequest,
    TransformersGenerator,
    TurnQueue,
    VLLMGenerator,
    completions_payload,
    cut_at_eos,
    group_by_sampling,
    parse_completion_choice,
)
from tests.policy.rollout_helpers import chatml_tokenizer, tiny_qwen2


@pytest.fixture(scope="module")
def tok():
    return chatml_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_qwen2(tok, seed=0)


def _prompts(tok) -> list[list[int]]:
    texts = ["<|im_start|>user\nAdd 2 and 3.<|im_end|>\n<|im_start|>assistant\n",
             "<|im_start|>system\nYou are an expert programmer.<|im_end|>\n<|im_start|>user\nPrint the sum of "
             "the numbers read from one line.<|im_end|>\n<|im_start|>assistant\n",
             "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"]
    return [list(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]


def _forward_logprobs(model, prompt: list[int], generated: list[int], temperature: float):
    """log_softmax(logits / T) of each generated token, from one unpadded forward pass."""
    import torch

    ids = torch.tensor([prompt + generated])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : len(prompt) + len(generated) - 1].float()
    logp = torch.log_softmax(logits / temperature, dim=-1)
    ranks = (logits > logits.gather(-1, torch.tensor(generated).unsqueeze(-1))).sum(-1)
    return logp.gather(-1, torch.tensor(generated).unsqueeze(-1)).squeeze(-1).tolist(), ranks.tolist()


def test_config_defaults_are_documented_and_top_k_off():
    s = SamplingConfig()
    assert s.top_k == 0 and s.top_p == 1.0 and s.temperature == 1.0
    for model_cls in (SamplingConfig, RolloutConfig):
        for name, f in model_cls.model_fields.items():
            assert f.description, f"{model_cls.__name__}.{name} is undocumented"
    with pytest.raises(ValueError):
        SamplingConfig(top_k=-1)


def test_request_budget_and_grouping():
    a = SamplingConfig(max_new_tokens=10)
    b = SamplingConfig(temperature=0.5)
    reqs = [GenerationRequest([1], a, max_new_tokens=4), GenerationRequest([2], b), GenerationRequest([3], a)]
    assert [r.budget for r in reqs] == [4, 256, 10]
    assert group_by_sampling(reqs) == [[0, 2], [1]]
    assert cut_at_eos([5, 6, 9, 7, 9], {9}, 10) == ([5, 6, 9], "stop")
    assert cut_at_eos([5, 6, 7], {9}, 2) == ([5, 6], "length")
    with pytest.raises(ValueError):
        Generation(token_ids=[1, 2], text="", logprobs=[0.0], finish_reason="stop")


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_transformers_batch_left_padding_matches_unpadded_forward(tok, model, temperature):
    """Batched generate with left padding: every row's logprobs equal log_softmax(logits / T) of an
    unpadded forward pass over its own prompt + generated ids (so padding leaked nowhere)."""
    gen = TransformersGenerator(model, tok)
    assert gen.eos_token_ids == [tok.convert_tokens_to_ids("<|im_end|>")]
    sampling = SamplingConfig(temperature=temperature, max_new_tokens=10, seed=1)
    prompts = _prompts(tok)
    budgets = [10, 6, 3]
    out = asyncio.run(gen.generate([GenerationRequest(p, sampling, max_new_tokens=b) for p, b in zip(prompts, budgets, strict=True)]))
    for p, b, g in zip(prompts, budgets, out, strict=True):
        assert 1 <= len(g.token_ids) <= b
        assert tok.pad_token_id not in g.token_ids[:-1]
        assert g.finish_reason == ("stop" if g.token_ids[-1] in gen.eos_token_ids else "length")
        ref, ranks = _forward_logprobs(model, p, g.token_ids, temperature or 1.0)
        assert g.logprobs == pytest.approx(ref, abs=1e-4)
        if temperature == 0.0:
            assert set(ranks) == {0}, "greedy decoding must pick the argmax every step"
        assert g.text == tok.decode([t for t in g.token_ids if t not in gen.eos_token_ids], skip_special_tokens=True)


def test_transformers_top_k_is_off_unless_set(tok, model):
    """transformers defaults to top_k=50; with top_k=0 a near-uniform random model samples outside the top 50."""
    gen = TransformersGenerator(model, tok)
    p = _prompts(tok)[0]
    free = asyncio.run(gen.generate([GenerationRequest(p, SamplingConfig(max_new_tokens=24, seed=3))]))[0]
    _, ranks = _forward_logprobs(model, p, free.token_ids, 1.0)
    assert max(ranks) >= 50, ranks
    capped = asyncio.run(gen.generate([GenerationRequest(p, SamplingConfig(max_new_tokens=24, top_k=5, seed=3))]))[0]
    _, ranks = _forward_logprobs(model, p, capped.token_ids, 1.0)
    assert max(ranks) < 5, ranks


def test_transformers_seed_repeats_and_mixed_sampling(tok, model):
    p = _prompts(tok)
    s = SamplingConfig(max_new_tokens=8, seed=7)
    a = TransformersGenerator(model, tok).generate_sync([GenerationRequest(x, s) for x in p])
    b = TransformersGenerator(model, tok).generate_sync([GenerationRequest(x, s) for x in p])
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    mixed = TransformersGenerator(model, tok).generate_sync(
        [GenerationRequest(p[0], SamplingConfig(temperature=0, max_new_tokens=5)), GenerationRequest(p[1], s),
         GenerationRequest(p[2], SamplingConfig(temperature=0, max_new_tokens=5), max_new_tokens=0)]
    )
    assert len(mixed) == 3 and mixed[2].token_ids == [] and len(mixed[0].token_ids) >= 1


def test_transformers_strips_padding_after_eos():
    """Rows that stopped early are padded by generate: the result ends at the first EOS, with its logprob."""
    import torch

    eos, pad = 9, 0
    steps = [torch.zeros(2, 12) for _ in range(4)]
    for t, row_tokens in enumerate(zip([3, 4, 5, 6], [7, eos, pad, pad], strict=True)):
        for row, token in enumerate(row_tokens):
            steps[t][row, token] = 5.0

    class FakeModel:
        device = torch.device("cpu")
        config = SimpleNamespace(max_position_embeddings=64)

        def generate(self, input_ids, attention_mask, generation_config):
            assert generation_config.top_k == 0 and generation_config.do_sample
            assert input_ids[1, 0].item() == pad and attention_mask[1, 0].item() == 0  # left padding
            new = torch.tensor([[3, 4, 5, 6], [7, eos, pad, pad]])
            return SimpleNamespace(sequences=torch.cat([input_ids, new], dim=1), logits=tuple(steps))

    class FakeTok:
        pad_token_id = pad
        eos_token_id = eos

        def get_vocab(self):
            return {"<|im_end|>": eos}

        def decode(self, ids, skip_special_tokens=True):
            return " ".join(map(str, ids))

    gen = TransformersGenerator(FakeModel(), FakeTok())
    assert gen.max_context_tokens == 64
    out = gen.generate_sync([GenerationRequest([1, 2, 3], SamplingConfig(max_new_tokens=4)),
                             GenerationRequest([1, 2], SamplingConfig(max_new_tokens=4))])
    assert out[0].token_ids == [3, 4, 5, 6] and out[0].finish_reason == "length"
    assert out[1].token_ids == [7, eos] and out[1].finish_reason == "stop" and out[1].text == "7"
    assert len(out[1].logprobs) == 2 and out[1].logprobs[1] > -0.1  # the sampled (high-logit) token


# --------------------------------------------------------------------------------------------------
# the turn queue
# --------------------------------------------------------------------------------------------------


class EchoGen:
    """Answers each request with its own prompt ids; sleeps to look busy; counts batch sizes."""

    def __init__(self, delay: float = 0.02, fail_on: int | None = None) -> None:
        self.delay = delay
        self.batch_sizes: list[int] = []
        self.fail_on = fail_on
        self.active = 0
        self.max_active = 0

    async def generate(self, requests):
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            self.batch_sizes.append(len(requests))
            await asyncio.sleep(self.delay)
            if self.fail_on is not None and any(r.prompt_ids[0] == self.fail_on for r in requests):
                raise RuntimeError("boom")
            return [Generation(token_ids=list(r.prompt_ids), text="", logprobs=None, finish_reason="stop")
                    for r in requests]
        finally:
            self.active -= 1


async def test_turn_queue_batches_waiting_requests():
    gen = EchoGen()
    q = TurnQueue(gen, max_batch_size=3)
    out = await asyncio.gather(*(q.submit(GenerationRequest([i])) for i in range(8)))
    assert [g.token_ids for g in out] == [[i] for i in range(8)]  # each answer goes to its own request
    assert gen.batch_sizes == [3, 3, 2]
    assert gen.max_active == 1  # one batch at a time

    # requests arriving while the generator is busy form the next batch together
    gen.batch_sizes.clear()
    first = asyncio.ensure_future(q.submit(GenerationRequest([100])))
    await asyncio.sleep(0.005)  # the generator is busy with [100]
    late = [asyncio.ensure_future(q.submit(GenerationRequest([200 + i]))) for i in range(3)]
    await asyncio.gather(first, *late)
    assert gen.batch_sizes == [1, 3]
    assert q.stats.batch_sizes[-2:] == [1, 3] and q.stats.requests == 12
    assert q.stats.busy_seconds > 0
    await q.close()


async def test_turn_queue_several_batches_in_flight_for_a_batching_server():
    """max_in_flight > 1 (a vLLM server batches on its own): turns that arrive while a batch runs are sent
    at once instead of waiting for it; busy time counts overlapping batches once."""
    gen = EchoGen(delay=0.05)
    q = TurnQueue(gen, max_batch_size=8, max_in_flight=4)
    first = asyncio.ensure_future(q.submit(GenerationRequest([1])))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(q.submit(GenerationRequest([2])))
    await asyncio.gather(first, second)
    assert gen.batch_sizes == [1, 1] and gen.max_active == 2
    assert q.stats.busy_seconds < sum(b - a for a, b in q.stats.intervals)
    await q.close()
    server = VLLMGenerator.server("http://127.0.0.1:1", "m", eos_token_ids=[2])
    assert server.continuous_batching and not VLLMGenerator.colocate(object(), eos_token_ids=[2]).continuous_batching


async def test_turn_queue_delivers_errors_and_keeps_serving():
    q = TurnQueue(EchoGen(fail_on=1), max_batch_size=4)
    results = await asyncio.gather(*(q.submit(GenerationRequest([i])) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    ok = await q.submit(GenerationRequest([5]))
    assert ok.token_ids == [5]
    await q.close()


# --------------------------------------------------------------------------------------------------
# vLLM (without vLLM)
# --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_colocate_without_vllm_says_what_to_install():
    with pytest.raises(ImportError, match=r"vllm.*extra"):
        VLLMGenerator.colocate("some/model", eos_token_ids=[2])
    with pytest.raises(ValueError, match="exactly one"):
        VLLMGenerator(eos_token_ids=[2])


def test_vllm_request_building_and_choice_parsing():
    req = GenerationRequest([5, 6, 7], SamplingConfig(temperature=0.8, top_p=0.9, max_new_tokens=50, seed=3),
                            max_new_tokens=20)
    body = completions_payload(req, "m", [2, 3])
    assert body["prompt"] == [5, 6, 7] and body["max_tokens"] == 20 and body["top_k"] == -1
    assert body["temperature"] == 0.8 and body["top_p"] == 0.9 and body["seed"] == 3
    assert body["stop_token_ids"] == [2, 3] and body["return_tokens_as_token_ids"] is True and body["logprobs"] == 1
    choice = {"text": "hi", "finish_reason": "stop",
              "logprobs": {"tokens": ["token_id:11", "token_id:2"], "token_logprobs": [-0.5, -0.1]}}
    g = parse_completion_choice(choice, [2])
    assert g.token_ids == [11, 2] and g.logprobs == [-0.5, -0.1] and g.finish_reason == "stop"
    # a stop token left out of the output is put back (and that row has no logprobs)
    g = parse_completion_choice({"text": "hi", "finish_reason": "stop", "stop_reason": 3,
                                 "logprobs": {"tokens": ["token_id:11"], "token_logprobs": [-0.5]}}, [2, 3])
    assert g.token_ids == [11, 3] and g.logprobs is None
    with pytest.raises(ValueError, match="token_id"):
        parse_completion_choice({"logprobs": {"tokens": ["hi"], "token_logprobs": [0.0]}}, [2])


class _FakeCompletions(BaseHTTPRequestHandler):
    """/v1/completions answering token-id prompts with the prompt reversed (plus the stop token)."""

    bodies: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        if self.path != "/v1/completions" or not isinstance(body["prompt"], list):
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b'{"error": "bad request"}')
            return
        ids = list(reversed(body["prompt"]))[: body["max_tokens"]]
        finish = "length"
        if len(ids) < body["max_tokens"]:
            ids.append(body["stop_token_ids"][0])
            finish = "stop"
        choice = {"index": 0, "text": " ".join(map(str, ids)), "finish_reason": finish,
                  "logprobs": {"tokens": [f"token_id:{i}" for i in ids], "token_logprobs": [-0.5] * len(ids)}}
        data = json.dumps({"choices": [choice]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


async def test_vllm_server_client_against_fake_completions_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeCompletions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        gen = VLLMGenerator.server(url, "tiny", eos_token_ids=[2], api_key="k")
        s = SamplingConfig(max_new_tokens=8)
        out = await gen.generate([GenerationRequest([5, 6, 7], s), GenerationRequest(list(range(10, 20)), s)])
        assert out[0].token_ids == [7, 6, 5, 2] and out[0].finish_reason == "stop"
        assert out[0].logprobs == [-0.5] * 4
        assert out[1].token_ids == list(range(19, 11, -1)) and out[1].finish_reason == "length"
        assert {b["model"] for b in _FakeCompletions.bodies} == {"tiny"}
        bad = VLLMGenerator.server(f"http://127.0.0.1:{server.server_address[1]}/nope", "tiny", eos_token_ids=[2])
        with pytest.raises(RuntimeError, match="answered 4"):
            await bad.generate([GenerationRequest([1], s)])
        await gen.close()
        await bad.close()
    finally:
        server.shutdown()


async def test_vllm_colocated_path_with_a_stand_in_module(monkeypatch):
    """The colocated path's request building and output parsing, against a stand-in ``vllm`` module (the
    real engine needs the vllm extra): token-id prompts, one SamplingParams per request, top_k off as -1,
    stop tokens kept in the ids, the sampled tokens' logprobs."""
    import sys
    import types

    made: list[dict] = []

    class SamplingParams:
        def __init__(self, **kw):
            made.append(kw)
            self.kw = kw

    class LLM:
        def generate(self, prompts, params, use_tqdm=False):
            outs = []
            for p, sp in zip(prompts, params, strict=True):
                ids = list(reversed(p["prompt_token_ids"]))[: sp.kw["max_tokens"] - 1] + [sp.kw["stop_token_ids"][0]]
                lps = [{t: SimpleNamespace(logprob=-0.1 * (k + 1))} for k, t in enumerate(ids)]
                outs.append(SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, text="x", logprobs=lps,
                                                                     finish_reason="stop", stop_reason=ids[-1])]))
            return outs

    fake = types.ModuleType("vllm")
    fake.SamplingParams = SamplingParams
    fake.LLM = LLM
    monkeypatch.setitem(sys.modules, "vllm", fake)
    gen = VLLMGenerator.colocate(LLM(), eos_token_ids=[2, 3])
    out = await gen.generate([GenerationRequest([5, 6, 7], SamplingConfig(max_new_tokens=8, seed=4)),
                              GenerationRequest([8, 9], SamplingConfig(top_k=20, temperature=0.5), max_new_tokens=2)])
    assert made[0]["top_k"] == -1 and made[0]["seed"] == 4 and made[0]["logprobs"] == 0 and made[0]["max_tokens"] == 8
    assert made[1]["top_k"] == 20 and made[1]["temperature"] == 0.5 and made[1]["max_tokens"] == 2
    assert out[0].token_ids == [7, 6, 5, 2] and out[0].logprobs == pytest.approx([-0.1, -0.2, -0.3, -0.4])
    assert out[1].token_ids == [9, 2] and out[1].finish_reason == "stop"
