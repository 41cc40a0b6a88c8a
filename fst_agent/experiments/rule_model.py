"""The rule model: a tiny Qwen2 pretrained locally to apply a rule stated in its context — imperfectly.

The general skill of the paper-in-miniature experiment lives here. Training episodes are ``fst-rules``
episodes (system = a context, user = ``Input: c a t``, assistant = one ``submit`` call), fresh random letters
in every one, drawn from a fixed seed:

* a warm-up of *copy* episodes only (``Rule: Write the letters unchanged.``, a training-only rule) until
  copying is learned (letter loss below ``copy_warmup_loss``, at most ``copy_warmup_steps`` steps), and
  ``copy_share`` of the ``steps`` that follow: reading the input letters, the skill every rule builds on,
  forms first;
* then ``stated_share`` of the rest state a rule of the library (``Rule: <statement>``, after one of a few
  preambles) and answer with it applied — with one letter wrong with probability ``label_noise``; the others
  state no rule (the seed context or a preamble) and answer with a random rule: under a task-agnostic context
  the model guesses among the rules, so RL alone can find a task's rule only by sampling it.

Recipe 1 (every token of packed episodes in one loss) never learned to copy a letter: measured, see
``experiments/README.md``. What recipe 2 changed, each measured on its own:

* the answer is written with a leading space (``" c a t"``), so that each of its letters is the same ``Ġc``
  token as in the prompt (before, the first letter was a bare ``c``); the tokenizer's training text carries
  the alphabet so that every ``Ġx`` / ``ĠX`` is one token;
* the loss covers the assistant turn only, and averages the answer's letters (and the ``"}}`` that ends it)
  apart from the call format, which gets a small weight (:func:`answer_loss`) — with one mean over the turn
  the letters never left chance level;
* the copy warm-up: mixed rules from the start never left chance level within 400 steps;
* whole episodes per batch (no packing: episodes do not see each other), a narrower MLP (faster steps).

Tokenizer markers and chat template, model shape and optimizer settings are :mod:`fst_agent.policy.tiny_model`'s;
a fixed step count, so a busy machine gets the same model, only later. Cached under
``cache_root()/models/rule-model-v<VERSION>-<name>/``, built in a temporary folder and renamed into place under
a file lock. :data:`FULL_RECIPE` is the experiment's, :data:`TEST_RECIPE` a short one for the test suite (named
as such in its folder name and build info). :func:`measure_skill` checks what was learned.
"""

from __future__ import annotations

import dataclasses
import json
import math
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
RULE_RECIPE_VERSION = "3"  # "2" was an unkept attempt whose cache may exist

PREAMBLES = [
    "Transform the input letters by the rule of the task and submit the result.",
    "You transform letters. Apply the rule, then call submit with the letters.",
    "Apply the task's rule to the input letters and submit them, space-separated.",
    "Read the input letters, transform them, and submit the answer.",
]
LETTERS = "abcdefghijklmnopqrstuvwxyz"
#: a training-only rule (not in the task library): the copy warm-up teaches reading the input letters
COPY_RULE = "copy"
COPY_STATEMENT = "Write the letters unchanged."


@dataclass(frozen=True)
class RuleModelRecipe:
    """Everything that decides the built rule model."""

    name: str = "full"
    seed: int = 0
    stated_share: float = 0.8
    label_noise: float = 0.1
    copy_share: float = 0.2
    copy_warmup_steps: int = 300  # at most; the warm-up ends when copying is learned (155 steps measured)
    copy_warmup_loss: float = 0.5  # letter loss (mean over 20 steps) that ends the warm-up
    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    batch_size: int = 32
    steps: int = 800  # of the rule mix, after the warm-up
    lr: float = 3e-3
    warmup_steps: int = 30
    format_loss_weight: float = 0.05  # the call format's weight beside the answer's letters (see answer_loss)
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    threads: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def tiny_recipe(self) -> tiny_model.Recipe:
        return tiny_model.Recipe(seed=self.seed, vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                                 intermediate_size=self.intermediate_size, layers=self.layers, heads=self.heads,
                                 kv_heads=self.kv_heads, max_position_embeddings=1024, batch_size=self.batch_size,
                                 steps=self.steps, lr=self.lr, warmup_steps=self.warmup_steps,
                                 min_lr_ratio=self.min_lr_ratio, weight_decay=self.weight_decay,
                                 threads=self.threads)


FULL_RECIPE = RuleModelRecipe()
#: the test suite's recipe: same data, far fewer steps (it proves the pipeline, not the skill)
TEST_RECIPE = RuleModelRecipe(name="test-short", steps=20, batch_size=16, copy_warmup_steps=10)


def rule_model_path(recipe: RuleModelRecipe = FULL_RECIPE, cache_dir: str | Path | None = None) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else tiny_model.cache_root() / "models"
    return root / f"rule-model-v{RULE_RECIPE_VERSION}-{recipe.name}"


def format_answer(letters: list[str]) -> str:
    """The submitted answer as the model writes it: a leading space, so that every letter is the same
    ``Ġx`` token as in the prompt's ``Input: c a t`` (without it the first letter is a different token)."""
    return " " + " ".join(letters)


def transcript_messages(rng: random.Random, recipe: RuleModelRecipe, env_cls: Any,
                        copy_share: float | None = None) -> list[dict[str, Any]]:
    """One synthetic episode (system, user, assistant submit call)."""
    letters = " ".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 5)))
    share = recipe.copy_share if copy_share is None else copy_share
    if rng.random() < share:
        context = f"{rng.choice(PREAMBLES)}\nRule: {COPY_STATEMENT}"
        answer = letters.split()
    else:
        rule = rng.choice(env_cls.rule_ids())
        if rng.random() < recipe.stated_share:
            context = f"{rng.choice(PREAMBLES)}\nRule: {env_cls.rule_statement(rule)}"
        else:
            context = rng.choice([env_cls.seed_context, *PREAMBLES])
        answer = env_cls.apply_rule(rule, letters).split()
        if rng.random() < recipe.label_noise:
            i = rng.randrange(len(answer))
            answer[i] = rng.choice(LETTERS)
    call = {"name": "submit", "arguments": {"answer": format_answer(answer)}}
    return [{"role": "system", "content": context}, {"role": "user", "content": env_cls.task_prompt(letters)},
            {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]}]


def render_conversations(conversations: list[list[dict[str, Any]]]) -> list[str]:
    from transformers.utils.chat_template_utils import render_jinja_template

    tools = [spec.json_schema for spec in rules_env_class().tool_specs()]
    rendered, _ = render_jinja_template(conversations=conversations, tools=tools,
                                        chat_template=tiny_model.CHAT_TEMPLATE)
    return list(rendered)


def transcript_texts(recipe: RuleModelRecipe, n: int, seed: int, copy_share: float | None = None) -> list[str]:
    env_cls = rules_env_class()
    rng = random.Random(seed)
    return render_conversations([transcript_messages(rng, recipe, env_cls, copy_share) for _ in range(n)])


def build_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """Byte-level BPE on ``texts`` with the tiny default model's markers and chat template. Every letter,
    space-prefixed, lower and upper case, is one token (``Ġc``, ``ĠC``): the alphabet is added to the
    training text often enough that those merges come first, so ``c a t`` is tokenized letter by letter the
    same way in the prompt and in the answer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=tiny_model.SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    markers = set(tiny_model.SPECIAL_TOKENS + tiny_model.ADDED_TOKENS)
    alphabet = " " + " ".join(LETTERS + LETTERS.upper())
    pieces = [p for text in texts for p in _split_markers(text, markers)] + [alphabet] * (len(texts) * 4)
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


def letter_token_ids(tokenizer: Any, *, with_end: bool = True) -> list[int]:
    """Ids of the tokens that decide an answer: its letters (``Ġc``, ``ĠC`` and the bare ``c``, the second
    letter of a ``double`` pair) and, ``with_end``, ``"}}``, which ends it (how many letters)."""
    pieces = [f"Ġ{c}" for c in LETTERS + LETTERS.upper()] + list(LETTERS) + (['"}}'] if with_end else [])
    ids = tokenizer.convert_tokens_to_ids(pieces)
    unknown = [p for p, i in zip(pieces, ids, strict=True) if i is None or i == tokenizer.unk_token_id]
    if unknown:
        raise ValueError(f"the rule model's tokenizer lacks the letter tokens {unknown}")
    return ids


def episode_batch(tokenizer: Any, texts: list[str]) -> tuple[Any, Any]:
    """(input ids, labels) of whole episodes, right-padded; labels cover the assistant turn only (the
    prompt's letters are random: predicting them teaches nothing)."""
    import torch

    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assistant = tokenizer.convert_tokens_to_ids("assistant")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    rows = tokenizer(texts, add_special_tokens=False)["input_ids"]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, row in enumerate(rows):
        turn = max(i for i in range(len(row) - 1) if row[i] == start and row[i + 1] == assistant) + 2
        ids[r, : len(row)] = torch.tensor(row)
        labels[r, turn: len(row)] = ids[r, turn: len(row)]
    return ids, labels


def answer_loss(logits: Any, labels: Any, letter_ids: Any, format_weight: float) -> tuple[Any, Any]:
    """(loss, mean loss on the letter tokens): the answer's letters and the rest of the assistant turn are
    averaged separately, the latter weighted by ``format_weight``. Measured: with one plain mean over the
    turn (~25 tokens, 3-5 of them letters) the tiny model learns the call format and never starts copying
    letters (letter loss stays at ln 26 for 600 steps); with the letters averaged on their own it copies
    within ~150 steps."""
    import torch

    target = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), target.clamp(min=0), reduction="none")
    is_letter = torch.isin(target, letter_ids)
    is_format = (target != -100) & ~is_letter
    letters = nll[is_letter].mean()
    return letters + format_weight * nll[is_format].mean(), letters


def _cosine_lr(step: int, recipe: RuleModelRecipe) -> float:
    """The main phase's learning rate: cosine from ``lr`` down to ``min_lr_ratio * lr`` over ``steps``."""
    progress = min(1.0, step / max(1, recipe.steps))
    return recipe.lr * (recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model: Any, tokenizer: Any, recipe: RuleModelRecipe) -> dict[str, Any]:
    """The copy warm-up, then ``recipe.steps`` steps of the rule mix; fresh episodes (new random letters) in
    every batch, AdamW.

    The warm-up (copy episodes only, the loss on the letters alone, the learning rate ramped up then held)
    runs until the letter loss over its last 20 steps falls below ``copy_warmup_loss``, at most
    ``copy_warmup_steps`` steps: when copying forms is a sudden, seed-dependent transition (measured between
    ~130 and >250 steps), and rules started before it never left chance level. The main phase adds ``"}}``
    (where the answer ends) to the letter group and decays the learning rate on a cosine."""
    import torch

    threads = tiny_model.training_threads(recipe.tiny_recipe())
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    env_cls = rules_env_class()
    rng = random.Random(recipe.seed)
    torch.manual_seed(recipe.seed)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, betas=(0.9, 0.95))
    copy_ids = torch.tensor(letter_token_ids(tokenizer, with_end=False))
    answer_ids = torch.tensor(letter_token_ids(tokenizer))
    losses: list[float] = []
    letter_losses: list[float] = []
    warmup_used, tokens, step = recipe.copy_warmup_steps, 0, 0
    started = time.perf_counter()
    try:
        model.train()
        while step < warmup_used + recipe.steps:
            warming = step < warmup_used
            lr = (recipe.lr * min(1.0, (step + 1) / recipe.warmup_steps) if warming
                  else _cosine_lr(step - warmup_used, recipe))
            for group in opt.param_groups:
                group["lr"] = lr
            texts = render_conversations([transcript_messages(rng, recipe, env_cls, 1.0 if warming else None)
                                          for _ in range(recipe.batch_size)])
            ids, labels = episode_batch(tokenizer, texts)
            logits = model(input_ids=ids, attention_mask=(ids != tokenizer.pad_token_id).long()).logits
            loss, letter_loss = answer_loss(logits, labels, copy_ids if warming else answer_ids,
                                            recipe.format_loss_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            letter_losses.append(letter_loss.item())
            tokens += int(ids.numel())
            step += 1
            if warming and len(letter_losses) >= 20 and sum(letter_losses[-20:]) / 20 < recipe.copy_warmup_loss:
                warmup_used = step
                log.info("rule_model.copy_learned", step=step, letter_loss=round(sum(letter_losses[-20:]) / 20, 4))
            if step % 50 == 0:
                log.info("rule_model.train", step=step, warming=warming, loss=round(sum(losses[-50:]) / 50, 4),
                         letter_loss=round(sum(letter_losses[-50:]) / 50, 4))
        model.eval()
    finally:
        torch.set_num_threads(old_threads)
    elapsed = time.perf_counter() - started
    return {"steps": step, "copy_warmup_steps_used": warmup_used, "threads": threads, "tokens": tokens,
            "train_seconds": round(elapsed, 1), "tokens_per_second": round(tokens / elapsed),
            "first_loss": round(losses[0], 4), "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
            "final_letter_loss": round(sum(letter_losses[-20:]) / len(letter_losses[-20:]), 4)}


def _built_with(target: Path, recipe: RuleModelRecipe) -> bool:
    """Whether ``target`` holds a finished build of exactly ``recipe`` (a cache left by an edited recipe whose
    version was not bumped is rebuilt, not reused)."""
    info = target / "fst_build.json"
    return info.is_file() and json.loads(info.read_text()).get("recipe") == recipe.to_dict()


def build_rule_model(recipe: RuleModelRecipe = FULL_RECIPE, *, cache_dir: str | Path | None = None,
                     force: bool = False) -> Path:
    """The cached rule model's folder (a Hugging Face model folder), built first if missing."""
    from filelock import FileLock

    target = rule_model_path(recipe, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if _built_with(target, recipe) and not force:
            return target
        started = time.perf_counter()
        log.info("rule_model.build", path=str(target), recipe=recipe.name, steps=recipe.steps)
        tokenizer = build_tokenizer(transcript_texts(recipe, 1500, recipe.seed + 1), recipe.vocab_size)
        model = tiny_model.build_model(tokenizer, recipe.tiny_recipe())
        stats = train(model, tokenizer, recipe)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
        try:
            os.chmod(tmp, 0o755)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            info = {"recipe_version": RULE_RECIPE_VERSION, "recipe": recipe.to_dict(),
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
