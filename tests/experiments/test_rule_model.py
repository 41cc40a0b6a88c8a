"""The rule model's recipe pieces that decide whether it can learn to read the input letters: the tokenizer
(each letter one token, the same in the prompt and in the answer) and the loss (letters averaged apart from
the call format). Fast: no training."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch

from fst_agent.experiments.rule_env import rules_env_class
from fst_agent.experiments.rule_model import (
    COPY_RULE,
    FULL_RECIPE,
    TEST_RECIPE,
    _built_with,
    answer_loss,
    build_tokenizer,
    episode_batch,
    letter_token_ids,
    rule_model_path,
    transcript_texts,
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(transcript_texts(FULL_RECIPE, 300, 1), FULL_RECIPE.vocab_size)


def test_every_answer_letter_is_the_prompt_letters_token(tokenizer):
    env_cls = rules_env_class()
    assert all('"answer": " ' in text for text in transcript_texts(FULL_RECIPE, 20, 3))  # the leading space
    rng = random.Random(0)
    for rule in env_cls.rule_ids():
        for _ in range(30):
            letters = " ".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 5)))
            prompt = tokenizer.convert_ids_to_tokens(tokenizer(f"Input: {letters}")["input_ids"])
            assert prompt[2:] == [f"Ġ{c}" for c in letters.split()]
            answer = env_cls.apply_rule(rule, letters).split()
            ids = tokenizer('{"answer": " ' + " ".join(answer) + '"}}')["input_ids"]
            pieces = tokenizer.convert_ids_to_tokens(ids)
            inner = pieces[pieces.index('Ġ"') + 1: pieces.index('"}}')]
            assert inner == [p for a in answer for p in (f"Ġ{a[0]}", *a[1:])], (rule, answer, inner)


def test_the_loss_averages_the_letters_apart_from_the_format(tokenizer):
    texts = transcript_texts(FULL_RECIPE, 4, 7)
    ids, labels = episode_batch(tokenizer, texts)
    letters = torch.tensor(letter_token_ids(tokenizer))
    targets = labels[:, 1:]
    is_letter = torch.isin(targets, letters)
    assert 12 <= int(is_letter.sum()) <= 40  # 3-5 letters per answer (two tokens each when doubled)
    vocab = ids.max().item() + 1
    logits = torch.zeros(ids.shape[0], ids.shape[1], vocab)  # uniform: every token costs ln(vocab)
    loss, letter_loss = answer_loss(logits, labels, letters, format_weight=0.5)
    uniform = torch.log(torch.tensor(float(vocab)))
    assert letter_loss.item() == pytest.approx(uniform.item(), rel=1e-5)
    assert loss.item() == pytest.approx(1.5 * uniform.item(), rel=1e-5)


def test_recipes_have_their_own_cache_folders():
    assert rule_model_path(FULL_RECIPE).name.startswith("rule-model-v3-")
    assert rule_model_path(FULL_RECIPE) != rule_model_path(TEST_RECIPE)
    assert COPY_RULE not in rules_env_class().rule_ids()  # the copy warm-up rule is training-only


def test_a_cached_build_of_another_recipe_is_not_reused(tmp_path):
    target = tmp_path / "rule-model"
    target.mkdir()
    assert not _built_with(target, TEST_RECIPE)  # nothing built
    (target / "fst_build.json").write_text(json.dumps({"recipe": TEST_RECIPE.to_dict()}))
    assert _built_with(target, TEST_RECIPE)
    assert not _built_with(target, dataclasses.replace(TEST_RECIPE, steps=TEST_RECIPE.steps + 1))
