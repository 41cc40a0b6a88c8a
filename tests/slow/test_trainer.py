"""FSTGRPOTrainer on a tiny random Qwen2 and fixed rollouts: the single-turn reduction to TRL's own numbers
(TRL's real ``_generate_and_score_completions`` on the same batch), per-token multi-turn advantages, tool
tokens and masked rows out of the loss, KL to the base model (frozen copy, TRL's reference, LoRA-disabled),
the four loss types, metrics, and the errors a bad rollout or set-up gets."""

from __future__ import annotations

import math

import pytest
import torch

from fst_agent.slow import FSTGRPOTrainer, RolloutOutputError, SlowConfig, compute_advantages, final_reward
from tests.slow.slow_helpers import (
    Episode,
    FixedRollout,
    batch_inputs,
    multi_turn_batch,
    single_turn_batch,
    tiny_policy,
    to_trl,
    trainer_for,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """A tiny model trains several times faster on one thread (the rest of the session keeps its setting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


REWARDS = [1.0, 0.0, 0.5, None, 0.2, 0.2, 0.9, 0.0]  # two groups of four; row 3 is masked (sandbox_error)


def _plain_trl_trainer(model, tok, rollout, tmp_path, **overrides):
    """TRL's own GRPOTrainer on the same batch, reading the same final_reward."""
    from datasets import Dataset
    from trl import GRPOTrainer

    settings = {"num_generations": 4, "per_device_train_batch_size": 8, "max_steps": 1, "save_strategy": "no",
                "activation_checkpointing": False, "disable_tqdm": True, **overrides}
    args = SlowConfig().grpo_config(str(tmp_path / "plain"), **settings)
    return GRPOTrainer(model=model, reward_funcs=[final_reward], args=args, processing_class=tok,
                       train_dataset=Dataset.from_dict({"prompt": ["q0", "q1"]}), rollout_func=rollout)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_single_turn_advantages_are_trls_own(tmp_path, scale):
    """One turn, no turn reward: every scheme gives TRL's advantages on the same batch, number for number."""
    model, tok = tiny_policy()
    episodes = single_turn_batch(tok, REWARDS)
    plain = _plain_trl_trainer(tiny_policy()[0], tok, FixedRollout(episodes), tmp_path, scale_rewards=scale)
    plain.model.train()
    theirs = plain._generate_and_score_completions(batch_inputs(["q0", "q1"], 4))
    assert theirs["advantages"].shape == (8,) and theirs["advantages"][3] == 0.0
    # TRL 1.16 leaves a masked row's tokens in its loss mask (what FSTGRPOTrainer takes out)
    assert theirs["tool_mask"][3].sum() > 0

    ours = trainer_for(model, tok, FixedRollout(episodes), tmp_path, scale_rewards=scale)
    ours.model.train()
    for scheme in ("outcome", "turn_mix", "discounted"):
        ours.slow_config = SlowConfig.model_validate(
            {"advantage": {"scheme": scheme, "turn_weight": 0.7, "gamma": 0.5}, "drop_equal_reward_groups": False})
        out = ours._generate_and_score_completions(batch_inputs(["q0", "q1"], 4))
        assert out["advantages"].shape == out["completion_ids"].shape
        assert torch.equal(out["advantages"], theirs["advantages"].unsqueeze(1).expand_as(out["advantages"])), scheme
    assert torch.equal(out["completion_ids"], theirs["completion_ids"])


def test_multi_turn_advantages_lie_on_their_turns_and_tool_tokens_leave_the_loss(tmp_path):
    model, tok = tiny_policy()
    turn_rewards = [[0.1, 0.0], [0.0], [-0.1, 0.1, 0.0], [0.0, 0.0], [0.1], [0.1, 0.0], [0.0], [0.1, 0.1]]
    episodes = multi_turn_batch(tok, REWARDS, turn_rewards)
    trainer = trainer_for(model, tok, FixedRollout(episodes), tmp_path,
                          slow={"advantage": {"scheme": "turn_mix", "turn_weight": 0.5}})
    trainer.model.train()
    out = trainer._generate_and_score_completions(batch_inputs(["q0", "q1"], 4))
    expected = compute_advantages(REWARDS, turn_rewards, 4, scheme="turn_mix", turn_weight=0.5, drop_equal_groups=True)
    tool_mask, model_tokens = out["tool_mask"], out["fst_model_token_mask"]
    for b, episode in enumerate(episodes):
        ids, env_mask, spans = episode.completion()
        for k, (start, end) in enumerate(spans):
            assert out["advantages"][b, start:end].tolist() == pytest.approx([expected.per_turn[b][k]] * (end - start))
        in_loss = episode.final_reward is not None
        assert tool_mask[b, : len(ids)].tolist() == [m * in_loss for m in env_mask]  # observations: 0; masked row: 0
        assert model_tokens[b, : len(ids)].tolist() == env_mask  # KL is measured on every generated token
        assert tool_mask[b, len(ids):].sum() == 0 or out["completion_mask"][b, len(ids):].sum() == 0
    assert out["tool_mask"][3].sum() == 0 and out["advantages"][3].abs().sum() == 0
    kept_tokens = sum(sum(e.completion()[1]) for e in episodes if e.final_reward is not None)
    assert int(out["num_items_in_batch"]) == kept_tokens


def _grads(trainer, batch):
    trainer.model.zero_grad(set_to_none=True)
    trainer._compute_loss(trainer.model, batch).backward()
    return [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "cispo"])
def test_no_gradient_flows_through_tool_tokens_or_masked_rows(tmp_path, loss_type):
    """Giving the tool (observation) tokens and the masked row absurd advantages changes no gradient; the loss
    of the whole batch equals the loss of the batch without the masked row (TRL's normalizers included)."""
    from transformers import AutoModelForCausalLM

    model, tok = tiny_policy()
    model.save_pretrained(tmp_path / "model")  # beta > 0: TRL builds its reference model from the model's path
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    turn_rewards = [[0.1, 0.0], [0.0, 0.1], [-0.1, 0.1, 0.0], [0.0, 0.0], [0.1, 0.0], [0.1, 0.0], [0.0], [0.1, 0.1]]
    episodes = multi_turn_batch(tok, REWARDS, turn_rewards, seed=1)
    trainer = trainer_for(model, tok, FixedRollout(episodes), tmp_path, loss_type=loss_type, beta=0.05,
                          slow={"drop_equal_reward_groups": False})
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by train(); here the loss is called directly
    batch = trainer._generate_and_score_completions(batch_inputs(["q0", "q1"], 4))
    assert "ref_per_token_logps" in batch
    before = _grads(trainer, batch)

    tampered = dict(batch)
    advantages = batch["advantages"].clone()
    observation = (batch["fst_model_token_mask"] == 0) & (batch["completion_mask"] == 1)
    assert observation.any()
    advantages[observation] = 1e3
    advantages[3] = -1e3  # the masked row
    tampered["advantages"] = advantages
    after = _grads(trainer, tampered)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))

    keep = [i for i in range(8) if REWARDS[i] is not None]
    without = {k: (v[keep] if isinstance(v, torch.Tensor) and v.dim() > 0 else v) for k, v in batch.items()}
    full = trainer._compute_loss(trainer.model, batch)
    sub = trainer._compute_loss(trainer.model, without)
    assert full.item() == pytest.approx(sub.item(), rel=1e-5, abs=1e-7)


def _train(trainer):
    trainer.train()
    return [h for h in trainer.state.log_history if "kl_to_base" in h]


def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def test_kl_to_base_with_beta_zero_uses_a_frozen_copy_and_rises_from_zero(tmp_path):
    model, tok = tiny_policy()
    initial = _snapshot(model)
    episodes = multi_turn_batch(tok, REWARDS, [[0.1, 0.0]] * 8)
    trainer = trainer_for(model, tok, FixedRollout(episodes), tmp_path, max_steps=4)
    assert trainer.kl_source == "frozen_copy" and trainer._base_model is not None
    logs = _train(trainer)
    kl = [h["kl_to_base"] for h in logs]
    assert len(kl) == 4 and kl[0] == 0.0 and kl[-1] > 1e-4, kl
    assert all(math.isfinite(h["entropy"]) for h in logs)
    base = dict(trainer.accelerator.unwrap_model(trainer._base_model).named_parameters())
    assert all(torch.equal(base[n], initial[n]) for n in initial)  # the copy stays the initial model
    assert any(not torch.equal(p, initial[n]) for n, p in trainer.model.named_parameters())


def test_a_model_given_by_path_gets_its_frozen_copy_loaded_from_there(tmp_path):
    model, tok = tiny_policy()
    model.save_pretrained(tmp_path / "model")
    episodes = single_turn_batch(tok, [1.0, 0.0, 0.5, 0.0] * 2)
    trainer = trainer_for(str(tmp_path / "model"), tok, FixedRollout(episodes), tmp_path, max_steps=3)
    assert trainer.kl_source == "frozen_copy" and trainer._base_model is not trainer.model
    kl = [h["kl_to_base"] for h in _train(trainer)]
    assert kl[0] == 0.0 and kl[-1] > 1e-4, kl


def test_kl_to_base_with_beta_positive_reuses_trls_reference(tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok = tiny_policy()
    model.save_pretrained(tmp_path / "model")  # TRL builds its reference model from the model's path
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    episodes = multi_turn_batch(tok, [1.0, 0.0, 0.5, 0.3, 0.2, 0.1, 0.9, 0.0], [[0.1, 0.0]] * 8)
    trainer = trainer_for(model, tok, FixedRollout(episodes), tmp_path, max_steps=3, beta=0.05)
    assert trainer.kl_source == "ref_model" and trainer._base_model is None and trainer.ref_model is not None
    logs = _train(trainer)
    assert logs[0]["kl_to_base"] == 0.0 and logs[-1]["kl_to_base"] > 0
    for h in logs:  # nothing masked or dropped: the same tokens as TRL's own penalty
        assert h["kl_to_base"] == pytest.approx(h["kl"], rel=1e-4, abs=1e-7)


def test_lora_trains_adapters_and_measures_kl_with_adapters_disabled(tmp_path):
    pytest.importorskip("peft")
    model, tok = tiny_policy()
    initial = _snapshot(model)
    episodes = multi_turn_batch(tok, REWARDS, [[0.1, 0.0]] * 8)
    trainer = trainer_for(model, tok, FixedRollout(episodes), tmp_path, max_steps=4, learning_rate=5e-2,
                          slow={"lora": {"r": 4, "alpha": 8, "target_modules": "all-linear"}})
    assert trainer.kl_source == "lora_disabled" and trainer._base_model is None  # no frozen copy
    assert type(trainer.model).__name__.startswith("Peft")
    logs = _train(trainer)
    kl = [h["kl_to_base"] for h in logs]
    assert kl[0] == 0.0 and kl[-1] > 1e-6, kl
    trained = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n for n in trained)
    assert any(not torch.all(p == 0) for n, p in trained.items() if "lora_B" in n)
    base = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
            for n, p in trainer.model.named_parameters() if "lora_" not in n}
    assert all(torch.equal(base[n], initial[n]) for n in initial if n in base)  # base weights untouched
    # the adapters live inside the model object the rollout engine's generator holds: it generates with them
    ids = torch.tensor([[20, 21, 22, 23]])
    with torch.no_grad():
        seen_by_generator = model(input_ids=ids).logits
        assert torch.equal(seen_by_generator, trainer.model(input_ids=ids).logits)
        with trainer.model.disable_adapter():
            assert not torch.allclose(seen_by_generator, trainer.model(input_ids=ids).logits)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "cispo"])
def test_each_loss_type_trains_and_logs_our_metrics(tmp_path, loss_type):
    model, tok = tiny_policy()
    initial = _snapshot(model)
    turn_rewards = [[0.1, 0.0], [0.0], [-0.1, 0.1, 0.0], [0.0, 0.0], [0.3], [0.3], [0.3], [0.3]]
    rewards = [1.0, 0.0, 0.5, None, 1.0, 1.0, 1.0, 1.0]  # the second group is all equal: dropped
    episodes = multi_turn_batch(tok, rewards, turn_rewards)
    trainer = trainer_for(model, tok, FixedRollout(episodes), tmp_path, loss_type=loss_type, max_steps=2,
                          slow={"advantage": {"scheme": "turn_mix", "turn_weight": 0.5}})
    logs = _train(trainer)
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    assert any(not torch.equal(p, initial[n]) for n, p in trainer.model.named_parameters())
    first = logs[0]
    assert first["episodes/submitted"] == 7 and first["episodes/sandbox_error"] == 1 and first["episodes/masked"] == 1
    assert first["groups/dropped"] == 1
    scored = [t for r, t in zip(rewards, turn_rewards, strict=True) if r is not None]
    assert first["reward/turn_1"] == pytest.approx(sum(t[0] for t in scored) / len(scored))
    assert first["reward/turn_3"] == pytest.approx(0.0) and first["turns/mean"] == pytest.approx(sum(map(len, scored)) / 7)
    assert "entropy" in first and "kl_to_base" in first


def test_rollout_runs_with_gradient_checkpointing_off(tmp_path):
    """The episodes are generated by the policy itself: with checkpointing on, transformers would drop the KV
    cache; the trainer turns it off for the rollout and back on for the update."""
    model, tok = tiny_policy()
    episodes = single_turn_batch(tok, [1.0, 0.0, 1.0, 0.0] * 2)
    seen = []

    def rollout(prompts, trainer):
        seen.append(trainer.accelerator.unwrap_model(trainer.model).is_gradient_checkpointing)
        return to_trl(episodes)

    trainer = trainer_for(model, tok, rollout, tmp_path, activation_checkpointing=True, max_steps=1)
    trainer.train()
    assert seen == [False] and trainer.accelerator.unwrap_model(trainer.model).is_gradient_checkpointing


def test_bad_rollout_output_is_named(tmp_path):
    model, tok = tiny_policy()
    good = to_trl(single_turn_batch(tok, [1.0, 0.0, 1.0, 0.0] * 2))
    cases = [
        ({k: v for k, v in good.items() if k != "final_reward"}, r"lacks \['final_reward'\]"),
        ({**good, "env_mask": [m[:-1] for m in good["env_mask"]]}, "row 0: env_mask has"),
        ({**good, "final_reward": good["final_reward"][:7]}, "'final_reward' has 7 rows for 8 prompts"),
        ({**good, "group_id": ["a", "a", "b", "b"] * 2}, "rows 0..3 mix rollout groups"),
    ]
    for output, message in cases:
        trainer = trainer_for(model, tok, lambda prompts, trainer, out=output: out, tmp_path)
        trainer.model.train()
        with pytest.raises(RolloutOutputError, match=message):
            trainer._generate_and_score_completions(batch_inputs(["q0", "q1"], 4))


def test_an_episode_without_a_generated_token_keeps_its_place(tmp_path):
    """An episode stopped before its first turn (no completion): one pad token, out of the loss, still scored
    in its group."""
    model, tok = tiny_policy()
    episodes = single_turn_batch(tok, [1.0, 0.0, 1.0, 0.0] * 2)
    episodes[1] = Episode(episodes[1].prompt_ids, [], [], 0.0, "token_limit")
    trainer = trainer_for(model, tok, FixedRollout(episodes), tmp_path)
    trainer.model.train()
    out = trainer._generate_and_score_completions(batch_inputs(["q0", "q1"], 4))
    assert (out["tool_mask"][1] * out["completion_mask"][1]).sum() == 0 and out["completion_ids"][1, 0] == tok.pad_token_id
    assert out["advantages"][0, 0] > 0 and out["advantages"][1, 0] < 0  # its 0.0 still counts in the baseline


def test_set_up_errors_are_clear(tmp_path):
    from trl import GRPOConfig

    model, tok = tiny_policy()
    rollout = FixedRollout(single_turn_batch(tok, [1.0, 0.0] * 4))
    args = SlowConfig().grpo_config(str(tmp_path), num_generations=4, per_device_train_batch_size=8)
    with pytest.raises(TypeError, match="does not take 'reward_funcs'"):
        FSTGRPOTrainer(model=model, processing_class=tok, args=args, rollout_func=rollout, reward_funcs=[final_reward])
    with pytest.raises(TypeError, match="does not take 'peft_config'.*lora"):
        FSTGRPOTrainer(model=model, processing_class=tok, args=args, rollout_func=rollout, peft_config=object())
    with pytest.raises(ValueError, match="needs a rollout_func"):
        FSTGRPOTrainer(model=model, processing_class=tok, args=args)
    with pytest.raises(ValueError, match="'lora_disabled' needs a LoRA policy"):
        FSTGRPOTrainer(model=model, processing_class=tok, args=args, rollout_func=rollout,
                       slow_config=SlowConfig(kl_to_base="lora_disabled"))
    hand_made = GRPOConfig(str(tmp_path), loss_type="cispo", use_cpu=True, bf16=False, num_generations=4,
                           per_device_train_batch_size=8)
    with pytest.raises(ValueError, match="epsilon_high=None"):
        FSTGRPOTrainer(model=model, processing_class=tok, args=hand_made, rollout_func=rollout)
