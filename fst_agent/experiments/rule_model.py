"""The rule model: a tiny Qwen2 pretrained locally to apply a rule stated in its context — imperfectly.

The general skill of the paper-in-miniature experiment lives here. Transcripts are ``fst-rules`` episodes
(system = a context, user = ``Input: c a t``, assistant = one ``submit`` call) built from a fixed seed:

* ``stated_share`` of them state a rule of the library in the context (``Rule: <statement>``, after one of
  a few preambles) and answer with that rule applied — except that with probability ``label_noise`` one
  letter of the answer is wrong, so the model learns the skill imperfectly and RL has something to improve;
* the rest state no rule (the environment's seed context or a preamble) and answer with a rule drawn at
  random: under a task-agnostic context the model guesses among the rules, so RL alone can find a task's
  rule by sampling it, slowly.

Tokenizer (byte-level BPE trained on these transcripts, the tiny default model's chat template and markers),
model shape and the AdamW loop are :mod:`fst_agent.policy.tiny_model`'s; a fixed step count, so a busy machine
gets the same model, only later. Cached under ``cache_root()/models/rule-model-v<VERSION>-<name>/``, built in a
temporary folder and renamed into place under a file lock. :data:`FULL_RECIPE` is the experiment's,
:data:`TEST_RECIPE` a short one for the test suite (named as such in its folder name and build info).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from fst_agent.experiments.rule_env import rules_env_class
from fst_agent.policy import tiny_model

log = structlog.get_logger("fst_agent.experiments.rule_model")

#: bump whenever anything below changes what gets built
RULE_RECIPE_VERSION = "1"

PREAMBLES = [
    "Transform the input letters by the rule of the task and submit the result.",
    "You transform letters. Apply the rule, then call submit with the letters.",
    "Apply the task's rule to the input letters and submit them, space-separated.",
    "Read the input letters, transform them, and submit the answer.",
]


@dataclass(frozen=True)
class RuleModelRecipe:
    """Everything that decides the built rule model."""

    name: str = "full"
    seed: int = 0
    transcripts: int = 12000
    stated_share: float = 0.8
    label_noise: float = 0.25
    vocab_size: int = 512
    seq_len: int = 512
    batch_size: int = 8
    steps: int = 600
    lr: float = 3e-3
    warmup_steps: int = 40

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def tiny_recipe(self) -> tiny_model.Recipe:
        return tiny_model.Recipe(seed=self.seed, vocab_size=self.vocab_size, max_position_embeddings=1024,
                                 seq_len=self.seq_len, batch_size=self.batch_size, steps=self.steps, lr=self.lr,
                                 warmup_steps=self.warmup_steps)


FULL_RECIPE = RuleModelRecipe()
#: the test suite's recipe: same data, far fewer steps (it proves the pipeline, not the skill)
TEST_RECIPE = RuleModelRecipe(name="test-short", transcripts=2000, steps=40)


def rule_model_path(recipe: RuleModelRecipe = FULL_RECIPE, cache_dir: str | Path | None = None) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else tiny_model.cache_root() / "models"
    return root / f"rule-model-v{RULE_RECIPE_VERSION}-{recipe.name}"


def transcript_messages(rng: random.Random, recipe: RuleModelRecipe, env_cls: Any) -> list[dict[str, Any]]:
    """One synthetic episode (system, user, assistant submit call)."""
    rule_ids = env_cls.rule_ids()
    letters = " ".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 5)))
    rule = rng.choice(rule_ids)
    if rng.random() < recipe.stated_share:
        context = f"{rng.choice(PREAMBLES)}\nRule: {env_cls.rule_statement(rule)}"
    else:
        context = rng.choice([env_cls.seed_context, *PREAMBLES])
    answer = env_cls.apply_rule(rule, letters).split()
    if rng.random() < recipe.label_noise:
        i = rng.randrange(len(answer))
        answer[i] = rng.choice("abcdefghijklmnopqrstuvwxyz")
    call = {"name": "submit", "arguments": {"answer": " ".join(answer)}}
    return [{"role": "system", "content": context}, {"role": "user", "content": env_cls.task_prompt(letters)},
            {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]}]


def transcript_texts(recipe: RuleModelRecipe, n: int, seed: int) -> list[str]:
    from transformers.utils.chat_template_utils import render_jinja_template

    env_cls = rules_env_class()
    tools = [spec.json_schema for spec in env_cls.tool_specs()]
    rng = random.Random(seed)
    conversations = [transcript_messages(rng, recipe, env_cls) for _ in range(n)]
    rendered, _ = render_jinja_template(conversations=conversations, tools=tools,
                                        chat_template=tiny_model.CHAT_TEMPLATE)
    return list(rendered)


def build_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """Byte-level BPE on ``texts`` with the tiny default model's markers and chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=tiny_model.SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    markers = set(tiny_model.SPECIAL_TOKENS + tiny_model.ADDED_TOKENS)
    pieces = (p for text in texts for p in _split_markers(text, markers))
    tok.train_from_iterator(pieces, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in tiny_model.ADDED_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   extra_special_tokens=["<|im_start|>"], chat_template=tiny_model.CHAT_TEMPLATE,
                                   padding_side="left", model_max_length=1024, clean_up_tokenization_spaces=False)


def _split_markers(text: str, markers: set[str]) -> list[str]:
    """``text`` cut at the marker tokens (BPE must not merge across them)."""
    out, rest = [], text
    while rest:
        hits = [(rest.find(m), m) for m in markers if m in rest]
        if not hits:
            out.append(rest)
            break
        at, marker = min(hits)
        if at:
            out.append(rest[:at])
        rest = rest[at + len(marker):]
    return out


def packed_rows(tokenizer: Any, texts: list[str], seq_len: int) -> Any:
    import torch

    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        stream.append(eot)
    rows = len(stream) // seq_len
    return torch.tensor(stream[: rows * seq_len], dtype=torch.long).view(rows, seq_len)


def build_rule_model(recipe: RuleModelRecipe = FULL_RECIPE, *, cache_dir: str | Path | None = None,
                     force: bool = False) -> Path:
    """The cached rule model's folder (a Hugging Face model folder), built first if missing."""
    from filelock import FileLock

    target = rule_model_path(recipe, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if (target / "fst_build.json").is_file() and not force:
            return target
        started = time.perf_counter()
        log.info("rule_model.build", path=str(target), recipe=recipe.name, steps=recipe.steps)
        tokenizer = build_tokenizer(transcript_texts(recipe, 1500, recipe.seed + 1), recipe.vocab_size)
        rows = packed_rows(tokenizer, transcript_texts(recipe, recipe.transcripts, recipe.seed), recipe.seq_len)
        tiny = recipe.tiny_recipe()
        model = tiny_model.build_model(tokenizer, tiny)
        stats = tiny_model.pretrain(model, rows, tiny)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
        try:
            os.chmod(tmp, 0o755)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            info = {"recipe_version": RULE_RECIPE_VERSION, "recipe": recipe.to_dict(), "data_rows": int(rows.shape[0]),
                    "parameters": sum(p.numel() for p in model.parameters()), "vocab": len(tokenizer),
                    "build_seconds": round(time.perf_counter() - started, 1), **stats}
            (tmp / "fst_build.json").write_text(json.dumps(info, indent=2) + "\n")
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("rule_model.built", path=str(target), seconds=info["build_seconds"])
        return target


def measure_skill(model_path: str | Path, *, tasks_per_rule: int = 20, seed: int = 123) -> dict[str, Any]:
    """Greedy exact-match and letter accuracy of the model per rule, with the rule stated in the context and
    under the environment's seed context (no rule): how well the general skill was learned."""
    import torch

    from fst_agent.policy.chat import ChatFormat
    from fst_agent.policy.tiny_model import load_policy_model

    model, tokenizer = load_policy_model(str(model_path), dtype="float32")
    fmt, env_cls = ChatFormat(tokenizer), rules_env_class()
    tools = [spec.json_schema for spec in env_cls.tool_specs()]
    rng = random.Random(seed)
    out: dict[str, Any] = {}
    for rule in env_cls.rule_ids():
        inputs = [" ".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 5)))
                  for _ in range(tasks_per_rule)]
        for label, context in (("stated", f"{PREAMBLES[0]}\nRule: {env_cls.rule_statement(rule)}"),
                               ("seed_context", env_cls.seed_context)):
            prompts = [fmt.prompt_ids([{"role": "system", "content": context},
                                       {"role": "user", "content": env_cls.task_prompt(x)}], tools) for x in inputs]
            width = max(map(len, prompts))
            pad = fmt.pad_token_id
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
            with torch.no_grad():
                gen = model.generate(input_ids=ids, attention_mask=(ids != pad).long(), do_sample=False,
                                     max_new_tokens=48, eos_token_id=fmt.eos_token_ids, pad_token_id=pad)
            exact, letters = 0, 0.0
            for x, row in zip(inputs, gen[:, width:].tolist(), strict=True):
                calls = fmt.parse_assistant(fmt.decode(row)).valid_tool_calls
                answer = str(calls[0].arguments.get("answer", "")) if calls else ""
                expected = env_cls.apply_rule(rule, x)
                letters += env_cls.score(expected, answer)
                exact += env_cls.score(expected, answer) == 1.0
            out.setdefault(rule, {})[label] = {"exact": exact / len(inputs), "letters": round(letters / len(inputs), 3)}
    return out
