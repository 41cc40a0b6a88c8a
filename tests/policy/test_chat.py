"""ChatFormat: token alignment of multi-turn tool conversations, masks, tool-call parsing.

Tokenizers are built locally (no hub downloads): a small byte-level BPE with the Qwen2.5 special and
added tokens, under (a) the Qwen2.5-Instruct chat template text, (b) TRL's Qwen3 training template where
TRL ships it, and (c) the tiny default model's own tokenizer and template.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fst_agent.policy.chat import (
    ChatFormat,
    ChatFormatError,
    TemplateNotPrefixPreserving,
    TokenSequence,
    model_token_mask,
    parse_tool_calls,
)
from fst_agent.types import Message, ToolCall
from tests.policy.rollout_helpers import QWEN25_TEMPLATE, hf_tokenizer
from tests.policy.rollout_helpers import bpe_tokenizer_object as bpe_tokenizer

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "run_code",
            "description": "Run a Python 3 program with the given standard input.",
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string", "description": "The whole program."},
                               "stdin": {"type": "string", "description": "Standard input.", "default": ""}},
                "required": ["code"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "submit",
            "description": "Submit the final program.",
            "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
        },
    },
]


def _trl_template(name: str) -> str | None:
    try:
        import trl
    except ImportError:
        return None
    path = Path(trl.__file__).parent / "chat_templates" / name
    return path.read_text() if path.is_file() else None


@pytest.fixture(scope="module")
def bpe_tokenizer_object():
    corpus = [
        "n = int(input())\nprint(sum(map(int, input().split())))\n",
        "system user assistant tool status: ok (exit code 0, 0.01 s)\nstdout:\n6\n",
        "Let me run the program on the example. public tests: 1/1 passed",
        json.dumps(TOOLS),
    ] * 20
    return bpe_tokenizer(corpus, vocab_size=600)


def _templates():
    out = [pytest.param("qwen2.5", id="qwen2.5")]
    if _trl_template("qwen3_training.jinja") is not None:
        out.append(pytest.param("qwen3_training", id="trl-qwen3-training"))
    out.append(pytest.param("tiny", id="tiny-default"))
    return out


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from fst_agent.policy.tiny_model import build_tokenizer

    return build_tokenizer(seed=0, n_texts=150)


@pytest.fixture(params=_templates())
def fmt(request, bpe_tokenizer_object, tiny_tokenizer) -> ChatFormat:
    if request.param == "qwen2.5":
        return ChatFormat(hf_tokenizer(bpe_tokenizer_object, QWEN25_TEMPLATE))
    if request.param == "qwen3_training":
        return ChatFormat(hf_tokenizer(bpe_tokenizer_object, _trl_template("qwen3_training.jinja")))
    return ChatFormat(tiny_tokenizer)


def _assistant_text(content: str, calls: list[tuple[str, dict]]) -> str:
    """An assistant turn's text exactly as the Qwen2.5 template renders it (what a trained model emits)."""
    parts = [content] if content else []
    for name, args in calls:
        parts.append("<tool_call>\n" + json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
                     + "\n</tool_call>")
    return "\n".join(parts)


def _generated_ids(fmt: ChatFormat, conversation: list[Message], content: str, calls: list[tuple[str, dict]]):
    """What a model trained on this template generates for that assistant message: the template's own
    text of the message, from after the generation prompt through the turn-end token."""
    message = Message(role="assistant", content=content,
                      tool_calls=[ToolCall(id=f"x{i}", name=n, arguments=a) for i, (n, a) in enumerate(calls)])
    prompt = fmt.render(conversation, TOOLS, add_generation_prompt=True)
    whole = fmt.render([*conversation, message], TOOLS)
    assert whole.startswith(prompt)
    body = whole[len(prompt):]
    body = body[: body.index(fmt.tokenizer.convert_ids_to_tokens(fmt.turn_end_id))]
    return fmt.encode(body) + [fmt.turn_end_id]


def _tool_msgs(results: list[tuple[str, str]], turn: int) -> list[Message]:
    return [Message(role="tool", content=c, name=n, tool_call_id=f"t{turn}_{i}") for i, (n, c) in enumerate(results)]


def test_turn_end_and_stop_tokens(fmt: ChatFormat):
    im_end = fmt.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert fmt.turn_end_id == im_end
    assert fmt.eos_token_ids == [im_end, fmt.tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    assert fmt.pad_token_id == fmt.tokenizer.convert_tokens_to_ids("<|endoftext|>")


def test_prompt_ids_are_the_rendered_prompt(fmt: ChatFormat):
    msgs = [Message(role="system", content="You are an expert."), Message(role="user", content="Add 2 and 3.")]
    ids = fmt.prompt_ids(msgs, TOOLS)
    text = fmt.tokenizer.decode(ids)
    assert text.endswith("<|im_start|>assistant\n")
    assert "You are an expert." in text and "run_code" in text
    assert ids == fmt.encode(fmt.render(msgs, TOOLS, add_generation_prompt=True))


def test_multi_turn_concatenation_equals_whole_rendering(fmt: ChatFormat):
    """prompt + generated + observation + generated + ... == the template's rendering of the conversation."""
    msgs = [Message(role="system", content="Solve it with tools."),
            Message(role="user", content="Print the sum of 3 numbers read from one line.")]
    turns = [
        ("I will run it on the example first.",
         [("run_code", {"code": "print(sum(map(int, input().split())))\n", "stdin": "1 2 3\n"})],
         [("run_code", "status: ok (exit code 0, 0.01 s)\nstdout:\n6")]),
        ("Two checks at once.",
         [("run_code", {"code": "print(1)", "stdin": ""}), ("run_code", {"code": "x = ", "stdin": "é ü"})],
         [("run_code", "status: ok\nstdout:\n1"),
          ("run_code", "status: runtime_error (exit code 1, 0.02 s)\nstderr:\nSyntaxError: invalid syntax")]),
    ]
    seq = TokenSequence(prompt_ids=fmt.prompt_ids(msgs, TOOLS))
    conversation = list(msgs)
    for n, (content, calls, results) in enumerate(turns):
        generated = _generated_ids(fmt, conversation, content, calls)
        assert fmt.closing_ids(generated) == []
        seq.add_model(generated)
        parsed = fmt.parse_assistant(fmt.decode(generated), id_prefix=f"t{n}")
        assert [(c.name, c.arguments) for c in parsed.tool_calls] == calls
        assert parsed.content == content
        tool_msgs = _tool_msgs(results, n)
        seq.add_observation(fmt.observation_ids(tool_msgs, tools=TOOLS))
        conversation += [parsed.to_message(), *tool_msgs]
    # last turn: a submit, then the episode ends (no observation after it)
    final = _generated_ids(fmt, conversation, "", [("submit", {"code": "print(6)"})])
    seq.add_model(final)
    conversation.append(fmt.parse_assistant(fmt.decode(final)).to_message())

    reference = fmt.encode(fmt.render(conversation, TOOLS))
    # the template ends the last assistant message with "<|im_end|>\n"; the model stopped at <|im_end|>
    assert seq.all_ids == reference[: len(seq.all_ids)]
    assert fmt.tokenizer.decode(reference[len(seq.all_ids):]).strip() == ""
    # masks: model tokens exactly the generated ones
    assert len(seq.env_mask) == len(seq.completion_ids)
    model_ids = [t for t, m in zip(seq.completion_ids, seq.env_mask, strict=True) if m == 1]
    assert sum(seq.env_mask) == sum(e - s for s, e in seq.turn_spans)
    assert model_ids[-1] == fmt.turn_end_id and model_ids.count(fmt.turn_end_id) == 3
    for start, end in seq.turn_spans:
        assert all(seq.env_mask[i] == 1 for i in range(start, end))
    # observation segments start right after a turn-end token and end with the generation prompt
    obs_text = fmt.tokenizer.decode([t for t, m in zip(seq.completion_ids, seq.env_mask, strict=True) if m == 0])
    assert obs_text.count("<tool_response>") == 3
    assert obs_text.endswith("<|im_start|>assistant\n")


def test_observation_with_real_history_matches_default(fmt: ChatFormat):
    history = [Message(role="system", content="S"), Message(role="user", content="U")]
    tool_msgs = _tool_msgs([("run_code", "stdout:\n1")], 0)
    assert fmt.observation_ids(tool_msgs, history=history) == fmt.observation_ids(tool_msgs)


def test_generated_ids_are_never_retokenized(fmt: ChatFormat):
    """A non-canonical tokenization of the model's text survives as sampled (observations are separate)."""
    text = _assistant_text("ok", [("run_code", {"code": "print(12345)"})])
    canonical = fmt.encode(text)
    # split the digits the tokenizer would have merged differently: spell the text character by character
    odd = [i for ch in text for i in fmt.encode(ch)] + [fmt.turn_end_id]
    assert odd[:-1] != canonical or len(canonical) == len(text)
    seq = TokenSequence(prompt_ids=[1, 2, 3])
    seq.add_model(odd)
    seq.add_observation(fmt.observation_ids(_tool_msgs([("run_code", "stdout:\n12345")], 0)))
    assert seq.completion_ids[: len(odd)] == odd
    assert fmt.parse_assistant(fmt.decode(odd)).tool_calls[0].arguments == {"code": "print(12345)"}


def test_truncated_turn_gets_closed_by_an_observation_token(fmt: ChatFormat):
    generated = fmt.encode('<tool_call>\n{"name": "run_code", "arguments": {"code": "pri')
    assert fmt.closing_ids(generated) == [fmt.turn_end_id]
    parsed = fmt.parse_assistant(fmt.decode(generated))
    assert len(parsed.tool_calls) == 1 and parsed.tool_calls[0].parse_error
    assert parsed.tool_calls[0].name == "run_code"


def test_model_token_mask_and_logprobs():
    ids, mask = model_token_mask([([1, 2], False), ([3, 4, 5], True), ([6], False), ([7], True)])
    assert ids == [1, 2, 3, 4, 5, 6, 7] and mask == [0, 0, 1, 1, 1, 0, 1]
    seq = TokenSequence(prompt_ids=[9])
    seq.add_model([3, 4], logprobs=[-0.5, -0.25])
    seq.add_observation([6])
    assert seq.completion_ids == [3, 4, 6] and seq.env_mask == [1, 1, 0] and seq.logprobs == [-0.5, -0.25, 0.0]
    assert seq.has_logprobs and len(seq) == 4
    seq.add_model([7])
    assert not seq.has_logprobs
    with pytest.raises(ValueError):
        seq.add_model([1, 2], logprobs=[0.0])


# --------------------------------------------------------------------------------------------------
# Templates that cannot be extended token by token
# --------------------------------------------------------------------------------------------------


def test_qwen3_inference_template_is_refused_clearly(bpe_tokenizer_object):
    template = _trl_template("qwen3.jinja")
    if template is None:
        pytest.skip("TRL's qwen3.jinja is not installed")
    with pytest.raises(TemplateNotPrefixPreserving, match="changed the text before them"):
        ChatFormat(hf_tokenizer(bpe_tokenizer_object, template))


def test_template_rewriting_history_is_refused(bpe_tokenizer_object):
    # drops every assistant message but the last: not prefix-preserving
    template = (
        "{%- for m in messages %}{%- if m.role != 'assistant' or loop.last %}"
        "{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )
    with pytest.raises(TemplateNotPrefixPreserving):
        ChatFormat(hf_tokenizer(bpe_tokenizer_object, template))


def test_tokenizer_without_template_is_refused(bpe_tokenizer_object):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=bpe_tokenizer_object, eos_token="<|im_end|>")
    with pytest.raises(ChatFormatError, match="no chat template"):
        ChatFormat(tok)


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qfmt(bpe_tokenizer_object) -> ChatFormat:
    return ChatFormat(hf_tokenizer(bpe_tokenizer_object, QWEN25_TEMPLATE))


def test_parse_good_call_with_thoughts(qfmt: ChatFormat):
    text = ('<think>The sum is easy.</think>\nLet me test it.\n<tool_call>\n'
            '{"name": "run_tests", "arguments": {"code": "print(1)"}}\n</tool_call><|im_end|>')
    p = qfmt.parse_assistant(text)
    assert p.thoughts == "The sum is easy." and p.content == "Let me test it."
    assert p.tool_calls == [ToolCall(id="call_0", name="run_tests", arguments={"code": "print(1)"},
                                     raw='<tool_call>\n{"name": "run_tests", "arguments": {"code": "print(1)"}}\n'
                                         "</tool_call>")]
    assert p.has_tool_call and p.valid_tool_calls == p.tool_calls


def test_parse_several_calls_and_tolerated_shapes(qfmt: ChatFormat):
    text = (
        '<tool_call>\n{"name": "run_code", "arguments": "{\\"code\\": \\"print(2)\\", \\"stdin\\": \\"\\"}"}\n'
        "</tool_call>\n"
        '<tool_call>{"name": "run_code", "arguments": {"code": "print(3)"}} trailing junk }}</tool_call>'
        '<tool_call>\n```json\n{"name": "submit", "parameters": {"code": "print(4)"}}\n```\n</tool_call>'
        '<tool_call>{"type": "function", "function": {"name": "submit", "arguments": {}}}</tool_call>'
    )
    calls = qfmt.parse_assistant(text, id_prefix="turn3").tool_calls
    assert [(c.id, c.name, c.arguments, c.parse_error) for c in calls] == [
        ("turn3_0", "run_code", {"code": "print(2)", "stdin": ""}, None),
        ("turn3_1", "run_code", {"code": "print(3)"}, None),
        ("turn3_2", "submit", {"code": "print(4)"}, None),
        ("turn3_3", "submit", {}, None),
    ]


@pytest.mark.parametrize(
    ("block", "name", "error"),
    [
        ('{"name": "run_code", "arguments": {"code": "print(1)"', "run_code", "invalid JSON"),
        ('{"arguments": {"code": "x"}}', "", 'no "name"'),
        ('{"name": "run_code", "arguments": "not json"}', "run_code", "not valid JSON"),
        ('{"name": "run_code", "arguments": [1, 2]}', "run_code", "must be a JSON object"),
        ("run_code(code='print(1)')", "", "no JSON object"),
        ('["run_code"]', "", "no JSON object"),
        ("", "", "no JSON object"),
    ],
)
def test_parse_malformed_calls_become_parse_errors(qfmt: ChatFormat, block: str, name: str, error: str):
    p = qfmt.parse_assistant(f"Trying.\n<tool_call>\n{block}\n</tool_call>")
    assert len(p.tool_calls) == 1
    call = p.tool_calls[0]
    assert call.name == name and call.arguments == {} and error in (call.parse_error or "")
    assert p.valid_tool_calls == [] and p.content == "Trying."


def test_parse_unclosed_and_mixed(qfmt: ChatFormat):
    text = ('<tool_call>{"name": "a", "arguments": {}}<tool_call>{"name": "b", "arguments": {"x": 1}}')
    calls = qfmt.parse_assistant(text).tool_calls
    assert [(c.name, c.arguments, c.parse_error) for c in calls] == [("a", {}, None), ("b", {"x": 1}, None)]


def test_parse_no_call_and_thought_variants(qfmt: ChatFormat):
    assert qfmt.parse_assistant("The answer is 4.").tool_calls == []
    assert qfmt.parse_assistant("The answer is 4.").content == "The answer is 4."
    p = qfmt.parse_assistant("reasoning here</think>\n\nanswer")  # template opened <think> in the prompt
    assert p.thoughts == "reasoning here" and p.content == "answer"
    p = qfmt.parse_assistant("<think>still thinking when cut")
    assert p.thoughts == "still thinking when cut" and p.content == "" and p.tool_calls == []
    p = qfmt.parse_assistant("<think>a <tool_call> inside thoughts is not a call</think>done")
    assert p.tool_calls == [] and p.content == "done"


def test_parse_tool_calls_function_returns_rest():
    rest, calls = parse_tool_calls('before<tool_call>{"name": "x", "arguments": {}}</tool_call>after')
    assert rest == "beforeafter" and calls[0].name == "x"


def test_response_template_fallback_for_other_families():
    """Llama 3.2 writes tool calls as bare JSON; transformers' parse_response (set up by TRL) reads them."""
    template = _trl_template("llama3_2.jinja")
    if template is None:
        pytest.skip("TRL's llama3_2.jinja is not installed")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from trl.chat_template_utils import add_response_schema

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|eot_id|>", "<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>"]
    tok.train_from_iterator(["name arguments parameters run_code print"] * 5, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                 pad_token="<|finetune_right_pad_id|>", chat_template=template)
    add_response_schema(hf)
    fmt = ChatFormat(hf)
    assert fmt.turn_end_id == hf.convert_tokens_to_ids("<|eot_id|>")
    p = fmt.parse_assistant('{"name": "run_code", "parameters": {"code": "print(1)"}}<|eot_id|>')
    assert [(c.name, c.arguments, c.parse_error) for c in p.tool_calls] == [("run_code", {"code": "print(1)"}, None)]
    obs = fmt.observation_text([Message(role="tool", content="1", name="run_code", tool_call_id="c")])
    assert obs.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
