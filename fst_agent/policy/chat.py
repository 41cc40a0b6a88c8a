"""Chat formatting with tools, keeping the token ids exactly as the model produced them.

A multi-turn episode becomes ONE token sequence::

    prompt_ids(system + opening)  +  turn-1 generated ids  +  observation_ids(tool results 1)
                                  +  turn-2 generated ids  +  observation_ids(tool results 2)  + ...

The generated ids are never decoded and re-tokenized (a round trip through text can change them, and
then the policy gradient would be computed for tokens the model never sampled). Only the observations —
the text the chat template puts between the end of an assistant turn and the next assistant generation
prompt — are rendered by the tokenizer's chat template and tokenized.

The default format is Qwen2.5 / Qwen3 (ChatML) with Hermes-style tool calls::

    <|im_start|>assistant
    thoughts / text
    <tool_call>
    {"name": "run_code", "arguments": {"code": "...", "stdin": "..."}}
    </tool_call><|im_end|>
    <|im_start|>user
    <tool_response>
    ...
    </tool_response><|im_end|>
    <|im_start|>assistant

Any template works for :meth:`ChatFormat.prompt_ids` and :meth:`ChatFormat.observation_ids` as long as it
is *prefix-preserving* (rendering ``[..., assistant]`` is a prefix of rendering ``[..., assistant, tool,
...]``); a template that is not raises :class:`TemplateNotPrefixPreserving` with what differed.

Parsing (:meth:`ChatFormat.parse_assistant`) reads ``<tool_call>`` JSON blocks and ``<think>`` thoughts.
For a template of another family, when the text has no ``<tool_call>`` block and the tokenizer carries a
transformers ``response_template`` (transformers >= 5.13; TRL's ``add_response_schema`` sets one for
Qwen2.5/3, Llama 3.x, GPT-OSS, GLM-4-MoE), ``tokenizer.parse_response`` is used instead.

For TRL's ``rollout_func``: :class:`TokenSequence` collects the segments and yields ``prompt_ids``,
``completion_ids`` and ``env_mask`` (1 = a token the model generated, 0 = an observation token).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from fst_agent.types import Message, ToolCall

__all__ = [
    "ChatFormat",
    "ChatFormatError",
    "ParsedAssistant",
    "TemplateNotPrefixPreserving",
    "TokenSequence",
    "model_token_mask",
    "parse_tool_calls",
]

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_CALL_OPEN, _CALL_CLOSE = "<tool_call>", "</tool_call>"
_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|(?=<tool_call>)|\Z)", re.S)
_NAME_RE = re.compile(r'"name"\s*:\s*"([^"\\]{1,200})"')
_FENCE_RE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)
_SENTINEL = "\u2063FSTSENTINEL\u2063"


class ChatFormatError(ValueError):
    """The tokenizer or its chat template cannot be used the way the rollout engine needs."""


class TemplateNotPrefixPreserving(ChatFormatError):
    """Rendering a conversation with tool results appended changes the text rendered before them, so the
    tokens generated so far cannot simply be extended. Use a training template (e.g. TRL's
    ``trl/chat_templates/*_training.jinja``) or a prefix-preserving one."""


@dataclass(frozen=True)
class ParsedAssistant:
    """An assistant turn's text, split: free text, thoughts, tool calls (malformed ones with ``parse_error``)."""

    content: str
    thoughts: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)

    @property
    def has_tool_call(self) -> bool:
        return bool(self.tool_calls)

    @property
    def valid_tool_calls(self) -> list[ToolCall]:
        return [c for c in self.tool_calls if c.parse_error is None]

    def to_message(self) -> Message:
        """The assistant message as the chat template renders it (malformed calls are left in the text)."""
        return Message(role="assistant", content=self.content, tool_calls=self.valid_tool_calls)


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------


def _load_json_object(text: str) -> tuple[Any, str | None]:
    """The first JSON value in ``text`` (trailing junk after it tolerated) or (None, error)."""
    body = text.strip()
    fence = _FENCE_RE.match(body)
    if fence:
        body = fence.group(1).strip()
    start = body.find("{")
    if start < 0:
        return None, "no JSON object between <tool_call> and </tool_call>"
    try:
        value, _end = json.JSONDecoder().raw_decode(body, start)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg} at character {exc.pos})"
    return value, None


def _call_from_json(value: Any) -> tuple[str, dict[str, Any], str | None]:
    """(name, arguments, error) from a decoded ``{"name": ..., "arguments": ...}`` object."""
    if not isinstance(value, dict):
        return "", {}, f"expected a JSON object, got {type(value).__name__}"
    if "function" in value and isinstance(value["function"], dict):  # OpenAI shape
        value = value["function"]
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        return "", {}, 'the call has no "name" string'
    args: Any = value.get("arguments", value.get("parameters", {}))
    if args is None:
        args = {}
    if isinstance(args, str):
        text = args.strip()
        if not text:
            args = {}
        else:
            try:
                args = json.loads(text)
            except json.JSONDecodeError as exc:
                return name, {}, f'"arguments" is a string that is not valid JSON ({exc.msg})'
    if not isinstance(args, dict):
        return name, {}, f'"arguments" must be a JSON object, got {type(args).__name__}'
    return name.strip(), args, None


def parse_tool_calls(text: str, *, id_prefix: str = "call") -> tuple[str, list[ToolCall]]:
    """Every ``<tool_call>`` block of ``text`` as a ToolCall, and the text with the blocks removed.

    Tolerated: ``arguments`` as a JSON string, ``parameters`` instead of ``arguments``, an OpenAI-shaped
    ``{"function": {...}}``, a Markdown fence inside the block, junk after the JSON object, a missing
    closing tag (a turn cut by the token limit). Anything else becomes a ToolCall with ``parse_error``.
    """
    calls: list[ToolCall] = []
    for match in _CALL_BLOCK.finditer(text):
        raw = match.group(0)
        inner = match.group(1)
        value, error = _load_json_object(inner)
        name, args = "", {}
        if error is None:
            name, args, error = _call_from_json(value)
        if error is not None and not name:
            guess = _NAME_RE.search(inner)
            name = guess.group(1) if guess else ""
        # a complete JSON call whose closing tag is missing (cut, or the next call began) is accepted
        calls.append(
            ToolCall(id=f"{id_prefix}_{len(calls)}", name=name, arguments=args, raw=raw, parse_error=error)
        )
    rest = _CALL_BLOCK.sub("", text) if calls else text
    return rest, calls


def _split_thoughts(text: str) -> tuple[str | None, str]:
    """(thoughts, rest). ``<think>..</think>``; a lone ``</think>`` (the template opened the tag in the
    generation prompt) takes everything before it; an unclosed ``<think>`` takes everything after it."""
    open_at = text.find(_THINK_OPEN)
    close_at = text.find(_THINK_CLOSE)
    if open_at >= 0 and (close_at < 0 or close_at > open_at):
        if close_at < 0:
            return text[open_at + len(_THINK_OPEN) :].strip(), text[:open_at]
        thoughts = text[open_at + len(_THINK_OPEN) : close_at]
        return thoughts.strip(), text[:open_at] + text[close_at + len(_THINK_CLOSE) :]
    if close_at >= 0:
        return text[:close_at].strip(), text[close_at + len(_THINK_CLOSE) :]
    return None, text


# --------------------------------------------------------------------------------------------------
# Token bookkeeping
# --------------------------------------------------------------------------------------------------


def model_token_mask(segments: list[tuple[list[int], bool]]) -> tuple[list[int], list[int]]:
    """Concatenate ``(ids, generated_by_model)`` segments: (ids, mask) with mask 1 for model tokens."""
    ids: list[int] = []
    mask: list[int] = []
    for seg, by_model in segments:
        ids.extend(seg)
        mask.extend([1 if by_model else 0] * len(seg))
    return ids, mask


@dataclass
class TokenSequence:
    """One episode's tokens: the prompt, then alternating model turns and observations.

    ``completion_ids`` / ``env_mask`` are what TRL's ``rollout_func`` wants per row (``env_mask`` becomes
    the trainer's ``tool_mask``); ``logprobs`` holds the model's per-token log-probabilities where the
    backend gave them (0.0 for observation tokens, which are masked anyway).
    """

    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    turn_spans: list[tuple[int, int]] = field(default_factory=list)
    _have_logprobs: bool = True

    def add_model(self, ids: list[int], logprobs: list[float] | None = None) -> tuple[int, int]:
        """Append a model turn's generated ids (exactly as sampled); returns its (start, end) in completion."""
        start = len(self.completion_ids)
        self.completion_ids.extend(ids)
        self.env_mask.extend([1] * len(ids))
        if logprobs is None:
            self._have_logprobs = False
            self.logprobs.extend([0.0] * len(ids))
        else:
            if len(logprobs) != len(ids):
                raise ValueError(f"{len(logprobs)} logprobs for {len(ids)} generated tokens")
            self.logprobs.extend(float(x) for x in logprobs)
        span = (start, len(self.completion_ids))
        self.turn_spans.append(span)
        return span

    def add_observation(self, ids: list[int]) -> None:
        """Append environment tokens (tool responses, the next generation prompt): masked out (0)."""
        self.completion_ids.extend(ids)
        self.env_mask.extend([0] * len(ids))
        self.logprobs.extend([0.0] * len(ids))

    @property
    def all_ids(self) -> list[int]:
        return self.prompt_ids + self.completion_ids

    @property
    def has_logprobs(self) -> bool:
        return self._have_logprobs and bool(self.turn_spans)

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


# --------------------------------------------------------------------------------------------------
# The format
# --------------------------------------------------------------------------------------------------


def _as_chat(messages: list[Message] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m.to_chat() if isinstance(m, Message) else dict(m) for m in messages]


class ChatFormat:
    """Chat rendering and parsing for one tokenizer (its chat template must support ``tools``)."""

    def __init__(self, tokenizer: Any, *, chat_template: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        if chat_template is None and not getattr(tokenizer, "chat_template", None):
            raise ChatFormatError(
                f"tokenizer {getattr(tokenizer, 'name_or_path', type(tokenizer).__name__)!r} has no chat template; "
                "pass chat_template=... (e.g. a ChatML/Qwen2.5 template)"
            )
        self.turn_end_id, self._turn_end_text = self._find_turn_end()
        self._check_prefix_preserving()

    # ---- rendering -----------------------------------------------------------------------------

    def render(
        self,
        messages: list[Message] | list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        add_generation_prompt: bool = False,
    ) -> str:
        """The chat template's text for ``messages`` (tools in transformers' JSON schema shape)."""
        kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": add_generation_prompt}
        if tools:
            kwargs["tools"] = tools
        if self.chat_template is not None:
            kwargs["chat_template"] = self.chat_template
        text = self.tokenizer.apply_chat_template(_as_chat(messages), **kwargs)
        if not isinstance(text, str):  # some versions return a list for batched input
            raise ChatFormatError(f"apply_chat_template returned {type(text).__name__}, expected str")
        return text

    def encode(self, text: str) -> list[int]:
        """Tokens of rendered template text (special tokens in the text are parsed; none are added)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(
        self, messages: list[Message] | list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """System (context) + opening messages, ending with the assistant generation prompt."""
        return self.encode(self.render(messages, tools, add_generation_prompt=True))

    def observation_text(
        self,
        tool_messages: list[Message] | list[dict[str, Any]],
        *,
        history: list[Message] | list[dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """The text between an assistant turn's end token and the next assistant's first generated token.

        Rendered as ``render(history + [assistant, *tool_messages], generation prompt)`` minus
        ``render(history + [assistant])`` cut right after the assistant's end token. ``history`` defaults
        to a one-message stand-in; pass the real one for templates whose observation rendering depends on
        earlier messages.
        """
        if not tool_messages:
            raise ValueError("observation_text needs at least one message (the tool results)")
        base = _as_chat(history) if history else [{"role": "user", "content": "."}]
        assistant = {"role": "assistant", "content": _SENTINEL}
        before = self.render([*base, assistant], tools)
        after = self.render([*base, assistant, *_as_chat(tool_messages)], tools, add_generation_prompt=True)
        cut = self._end_of_assistant(before)
        if not after.startswith(before[:cut]):
            raise TemplateNotPrefixPreserving(
                "rendering tool results after an assistant turn changed the text before them; "
                f"first difference at character {_first_difference(before[:cut], after)}: "
                f"{before[:cut][-80:]!r} vs {after[: cut][-80:]!r}"
            )
        return after[cut:]

    def observation_ids(
        self,
        tool_messages: list[Message] | list[dict[str, Any]],
        *,
        history: list[Message] | list[dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> list[int]:
        """Tokens to append after an assistant turn's generated ids (ending with the turn-end token) so that
        the sequence equals the template's rendering of the whole conversation, through the next assistant
        generation prompt. If the generated ids did not end with :attr:`turn_end_id` (cut by the token
        limit, or another stop token), prepend :meth:`closing_ids` first."""
        return self.encode(self.observation_text(tool_messages, history=history, tools=tools))

    def closing_ids(self, generated_ids: list[int]) -> list[int]:
        """``[turn_end_id]`` when a turn's generated ids do not end with it (truncated, or stopped on another
        eos token), else ``[]``: append these as *observation* tokens (mask 0) before the observation."""
        if generated_ids and generated_ids[-1] == self.turn_end_id:
            return []
        return [self.turn_end_id]

    # ---- generation ----------------------------------------------------------------------------

    @property
    def eos_token_ids(self) -> list[int]:
        """Stop tokens for generation: the turn-end token first, then the tokenizer's eos and, for ChatML
        vocabularies, ``<|endoftext|>`` (Qwen2.5's generation config stops on both)."""
        ids = [self.turn_end_id]
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if isinstance(eos, int) and eos not in ids:
            ids.append(eos)
        if self._turn_end_text == "<|im_end|>":
            eot = self.tokenizer.convert_tokens_to_ids("<|endoftext|>")
            known = isinstance(eot, int) and self.tokenizer.convert_ids_to_tokens(eot) == "<|endoftext|>"
            if known and eot not in ids:
                ids.append(eot)
        return ids

    @property
    def pad_token_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return pad if isinstance(pad, int) else self.eos_token_ids[-1]

    def decode(self, generated_ids: list[int]) -> str:
        """A turn's text for parsing: added tokens kept (``<tool_call>`` may be special in some
        tokenizers), trailing stop and pad tokens dropped."""
        ids = list(generated_ids)
        stops = set(self.eos_token_ids) | {self.pad_token_id}
        while ids and ids[-1] in stops:
            ids.pop()
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    # ---- parsing -------------------------------------------------------------------------------

    def parse_assistant(self, text: str, *, id_prefix: str = "call") -> ParsedAssistant:
        """Thoughts, free text and tool calls of one assistant turn's text.

        Never raises for model output: a malformed ``<tool_call>`` block becomes a ToolCall with
        ``parse_error`` (and the name, when one could be read) so the environment answers with an error.
        """
        for stop in (self._turn_end_text, getattr(self.tokenizer, "eos_token", None)):
            if stop and text.endswith(stop):
                text = text[: -len(stop)]
        thoughts, rest = _split_thoughts(text)
        if _CALL_OPEN in rest:
            rest, calls = parse_tool_calls(rest, id_prefix=id_prefix)
            return ParsedAssistant(content=rest.strip(), thoughts=thoughts, tool_calls=calls)
        fallback = self._parse_with_response_template(text + self._turn_end_text, id_prefix)
        if fallback is not None:
            return fallback
        return ParsedAssistant(content=rest.strip(), thoughts=thoughts, tool_calls=[])

    def _parse_with_response_template(self, text: str, id_prefix: str) -> ParsedAssistant | None:
        """transformers' own parser, for tokenizers that carry a ``response_template`` (other families)."""
        if getattr(self.tokenizer, "response_template", None) is None or not hasattr(self.tokenizer, "parse_response"):
            return None
        try:
            parsed = self.tokenizer.parse_response(text, prefix=self._generation_prefix())
        except Exception:  # the parser is best-effort; the text stays content
            return None
        if not isinstance(parsed, dict):
            return None
        calls = []
        for raw in parsed.get("tool_calls") or []:
            name, args, error = _call_from_json(raw if isinstance(raw, dict) else {})
            calls.append(ToolCall(id=f"{id_prefix}_{len(calls)}", name=name, arguments=args,
                                  raw=json.dumps(raw, default=str), parse_error=error))
        thoughts = parsed.get("thinking") or parsed.get("reasoning_content")
        return ParsedAssistant(content=str(parsed.get("content") or "").strip(),
                               thoughts=str(thoughts).strip() if thoughts else None, tool_calls=calls)

    # ---- template introspection ----------------------------------------------------------------

    def _generation_prefix(self) -> str:
        """A rendered prompt ending with the assistant generation prompt (context for ``parse_response``)."""
        if not hasattr(self, "_gen_prefix"):
            self._gen_prefix = self.render([{"role": "user", "content": "."}], add_generation_prompt=True)
        return self._gen_prefix

    def _find_turn_end(self) -> tuple[int, str]:
        """The token the template closes an assistant turn with (``<|im_end|>`` for ChatML)."""
        text = self.render([{"role": "user", "content": "."}, {"role": "assistant", "content": _SENTINEL}])
        at = text.rfind(_SENTINEL)
        if at < 0:
            raise ChatFormatError("the chat template does not render assistant content")
        tail = text[at + len(_SENTINEL) :]
        added = {tok.content for tok in getattr(self.tokenizer, "added_tokens_decoder", {}).values()}
        for tok in sorted(added, key=len, reverse=True):
            if tok and tail.lstrip(" ").startswith(tok):
                tid = self.tokenizer.convert_tokens_to_ids(tok)
                if isinstance(tid, int):
                    return tid, tok
        eos = getattr(self.tokenizer, "eos_token", None)
        eos_id = getattr(self.tokenizer, "eos_token_id", None)
        if eos and isinstance(eos_id, int) and eos in tail:
            return eos_id, eos
        raise ChatFormatError(
            f"cannot tell which token ends an assistant turn: the template writes {tail[:40]!r} after the content"
        )

    def _end_of_assistant(self, rendered: str) -> int:
        """Index just after the turn-end token that closes the sentinel assistant message."""
        at = rendered.rfind(_SENTINEL)
        if at < 0:
            raise ChatFormatError("the chat template dropped the assistant content")
        end = rendered.find(self._turn_end_text, at)
        if end < 0:
            raise ChatFormatError(f"the assistant turn is not closed by {self._turn_end_text!r}")
        return end + len(self._turn_end_text)

    def _check_prefix_preserving(self) -> None:
        probe = [Message(role="tool", content="probe", name="probe", tool_call_id="call_0")]
        self.observation_text(probe)


def _first_difference(a: str, b: str) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))
