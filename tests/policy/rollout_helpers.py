"""Shared pieces of the generation and rollout tests: a local ChatML tokenizer (no hub), a random tiny Qwen2,
a scripted generator that emits given text through the real tokenizer, a tool environment without a
sandbox, and a sandbox wrapper that fails on purpose."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

from fst_agent.env.base import EnvConfig, ToolEnvironment
from fst_agent.env.tools import ToolOutput, tool
from fst_agent.policy.generation import Generation, GenerationRequest
from fst_agent.sandbox.common import sandbox_error
from fst_agent.types import ExecutionResult, Task

# The Qwen2.5-Instruct chat template (tool calls in <tool_call>, tool results as <tool_response> in a user turn).
QWEN25_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""


#: the added (non-special) tokens of Qwen2.5's chat format
QWEN25_ADDED_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>")


def bpe_tokenizer_object(corpus: list[str], vocab_size: int) -> Any:
    """A ``tokenizers.Tokenizer``: byte-level BPE (digits split) trained on ``corpus``, with Qwen2.5's special
    and added tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN25_ADDED_TOKENS])
    return tok


def hf_tokenizer(tok_object: Any, chat_template: str) -> Any:
    """``tok_object`` as a transformers tokenizer with ChatML's EOS/pad and ``chat_template``."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok_object, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=chat_template)


@functools.lru_cache(maxsize=1)
def chatml_tokenizer() -> Any:
    """A small byte-level BPE with Qwen2.5's special/added tokens and its chat template (built in ~0.1 s)."""
    corpus = [
        "n = int(input())\nprint(sum(map(int, input().split())))\n",
        "system user assistant tool status: ok (exit code 0, 0.01 s)\nstdout:\n6\n",
        'Let me compute it. {"name": "python", "arguments": {"code": "print(6*7)"}} submit answer',
        "A baker makes trays of rolls. How many are left? Use the python tool to compute, then call submit.",
    ] * 20
    return hf_tokenizer(bpe_tokenizer_object(corpus, vocab_size=500), QWEN25_TEMPLATE)


def tiny_qwen2(tokenizer: Any, seed: int = 0, max_positions: int = 4096) -> Any:
    """A random-init Qwen2 (2 layers, hidden 32) for ``tokenizer``; float32, eval mode."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(cfg)
    model.eval()
    return model


def call_text(name: str, arguments: dict[str, Any], content: str = "") -> str:
    """An assistant turn as a Qwen2.5 model writes it: text, then a <tool_call> block."""
    block = "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"
    return f"{content}\n{block}" if content else block


def rendered_call(chat: Any, name: str, arguments: dict[str, Any], content: str = "") -> str:
    """An assistant turn exactly as ``chat``'s template renders it (what a model trained on it emits)."""
    msgs = [{"role": "user", "content": "."},
            {"role": "assistant", "content": content,
             "tool_calls": [{"type": "function", "function": {"name": name, "arguments": arguments}}]}]
    text = chat.render(msgs)
    start = text.rindex("<|im_start|>assistant") + len("<|im_start|>assistant\n")
    return text[start: text.index("<|im_end|>", start)]


class ScriptedGenerator:
    """Emits scripted assistant text through the real tokenizer (its ids plus ``<|im_end|>``, cut to the
    request's budget); a request ``script(request)`` returns None for goes to ``fallback`` (e.g. a real
    TransformersGenerator). Records every batch size."""

    def __init__(
        self,
        tokenizer: Any,
        script: Callable[[GenerationRequest], str | None],
        *,
        fallback: Any = None,
        delay_s: float = 0.0,
        logprob: float | None = -0.25,
    ) -> None:
        self.tokenizer = tokenizer
        self.script = script
        self.fallback = fallback
        self.delay_s = delay_s
        self.logprob = logprob
        self.batch_sizes: list[int] = []
        self.end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def ids_for(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + [self.end_id]

    async def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        self.batch_sizes.append(len(requests))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        out: list[Generation | None] = [None] * len(requests)
        real: list[int] = []
        for i, r in enumerate(requests):
            text = self.script(r)
            if text is None:
                real.append(i)
                continue
            ids = self.ids_for(text)
            reason = "stop"
            if len(ids) > r.budget:
                ids, reason = ids[: r.budget], "length"
            lps = [self.logprob] * len(ids) if self.logprob is not None else None
            out[i] = Generation(token_ids=ids, text=text, logprobs=lps, finish_reason=reason)  # type: ignore[arg-type]
        if real:
            if self.fallback is None:
                raise AssertionError("the script has no text for a request and there is no fallback generator")
            gens = await self.fallback.generate([requests[i] for i in real])
            for i, g in zip(real, gens, strict=True):
                out[i] = g
        return [g for g in out if g is not None]


def prompt_text(tokenizer: Any, request: GenerationRequest) -> str:
    return tokenizer.decode(request.prompt_ids, skip_special_tokens=False)


# --------------------------------------------------------------------------------------------------
# a tool environment without a sandbox
# --------------------------------------------------------------------------------------------------


class EchoEnv(ToolEnvironment):
    """Tools: ``echo(text)`` (turn reward 0.1) and ``submit(answer)`` (ends; final reward 1 if answer == 'ok')."""

    name = "echo-test"
    config_class = EnvConfig

    def __init__(self, config=None, *, sandbox=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, sandbox=sandbox)
        self.answer: str | None = None

    @tool
    def echo(self, text: str) -> ToolOutput:
        """Say something back.

        Args:
            text: What to echo.
        """
        return ToolOutput(content=f"echo: {text}", reward=0.1)

    @tool
    def submit(self, answer: str) -> ToolOutput:
        """End the episode.

        Args:
            answer: The answer.
        """
        self.answer = answer
        return ToolOutput(content="done", done=True)

    async def final_reward(self) -> float | None:
        return 1.0 if self.answer == "ok" else 0.0


def echo_task(i: int = 0) -> Task:
    return Task(id=f"echo-{i}", env="echo-test", prompt=f"Task number {i}: echo twice, then submit ok.")


# --------------------------------------------------------------------------------------------------
# a sandbox that fails on purpose
# --------------------------------------------------------------------------------------------------


class FlakySandbox:
    """Wraps a real sandbox. A run whose written files contain ``# always-broken`` returns sandbox_error every
    time; one containing ``# flaky`` fails the first ``flaky_failures`` times (counted over all sessions)."""

    def __init__(self, inner: Any, flaky_failures: int = 1) -> None:
        self.inner = inner
        self.name = "flaky"
        self.config = getattr(inner, "config", None)
        self.flaky_left = flaky_failures
        self.failed_runs = 0
        self.sessions_opened = 0
        self.open_now = 0
        self.max_open = 0

    async def open_session(self) -> Any:
        session = await self.inner.open_session()
        self.sessions_opened += 1
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        return _FlakySession(self, session)

    async def close(self) -> None:
        await self.inner.close()


class _FlakySession:
    def __init__(self, box: FlakySandbox, inner: Any) -> None:
        self.box = box
        self.inner = inner
        self.files: dict[str, str] = {}
        self.closed = False

    async def write_file(self, path: str, content: str | bytes, *, executable: bool = False) -> None:
        self.files[path] = content if isinstance(content, str) else content.decode(errors="replace")
        await self.inner.write_file(path, content, executable=executable)

    async def run(self, argv: Sequence[str], **kwargs: Any) -> ExecutionResult:
        text = "\n".join(self.files.values()) + " ".join(argv) + str(kwargs.get("stdin") or "")
        if "# always-broken" in text:
            self.box.failed_runs += 1
            return sandbox_error("flaky", "injected failure (always-broken)")
        if "# flaky" in text and self.box.flaky_left > 0:
            self.box.flaky_left -= 1
            self.box.failed_runs += 1
            return sandbox_error("flaky", "injected failure (flaky)")
        return await self.inner.run(argv, **kwargs)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.box.open_now -= 1
        await self.inner.close()
