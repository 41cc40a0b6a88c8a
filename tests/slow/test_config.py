"""SlowConfig: our fields plus a ``trl:`` block validated against GRPOConfig; the GRPOConfig it builds."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from fst_agent.slow import SlowConfig


def test_defaults_build_a_cpu_grpo_config_with_the_paper_cispo_cap(tmp_path):
    args = SlowConfig().grpo_config(str(tmp_path), max_steps=3, seed=7)
    assert (args.loss_type, args.epsilon_high, args.beta) == ("cispo", 4.0, 0.0)
    assert args.max_steps == 3 and args.seed == 7 and args.output_dir == str(tmp_path)
    assert args.report_to in ([], "none", ["none"])
    if not torch.cuda.is_available():
        assert args.use_cpu is True and args.bf16 is False


def test_trl_block_then_overrides(tmp_path):
    slow = SlowConfig.model_validate({"trl": {"loss_type": "dapo", "epsilon_high": 0.28, "beta": 0.001,
                                              "num_generations": 4, "learning_rate": 1e-5}})
    args = slow.grpo_config(str(tmp_path), learning_rate=3e-4, report_to=["tensorboard"])
    assert (args.loss_type, args.epsilon_high, args.beta, args.num_generations) == ("dapo", 0.28, 0.001, 4)
    assert args.learning_rate == 3e-4 and args.report_to == ["tensorboard"]
    # cispo without a cap gets the paper's, an explicit one is kept
    assert SlowConfig.model_validate({"trl": {"loss_type": "cispo", "epsilon_high": 5.0}}).grpo_config(str(tmp_path)).epsilon_high == 5.0


def test_unknown_trl_field_is_an_error_naming_it():
    with pytest.raises(ValidationError, match=r"unknown field 'learning_rat'.*did you mean learning_rate"):
        SlowConfig.model_validate({"trl": {"learning_rat": 1e-5}})
    with pytest.raises(ValidationError, match="unknown field 'nonsense_knob'"):
        SlowConfig.model_validate({"trl": {"nonsense_knob": 1}})


def test_unknown_field_of_ours_is_an_error_naming_it():
    with pytest.raises(ValidationError, match="drop_equal_groups"):
        SlowConfig.model_validate({"drop_equal_groups": True})
    with pytest.raises(ValidationError, match="turn_weigth"):
        SlowConfig.model_validate({"advantage": {"turn_weigth": 1.0}})
    with pytest.raises(ValidationError, match="scheme"):
        SlowConfig.model_validate({"advantage": {"scheme": "best"}})
    with pytest.raises(ValidationError, match="rank"):
        SlowConfig.model_validate({"lora": {"rank": 8}})


@pytest.mark.parametrize(("trl", "message"), [
    ({"loss_type": "sapo"}, "loss_type 'sapo' is not supported; use one of grpo, dr_grpo, dapo, cispo"),
    ({"loss_type": "cispo", "epsilon_high": 0.2}, "epsilon_high=0.2 with loss_type 'cispo'"),
    ({"multi_objective_aggregation": "normalize_then_sum"}, "multi_objective_aggregation 'normalize_then_sum'"),
    ({"reward_weights": [1.0]}, "'reward_weights' is not settable here"),
    ({"output_dir": "x"}, "'output_dir' is not settable here: pass output_dir to SlowConfig.grpo_config"),
])
def test_trl_values_we_cannot_honour(trl, message):
    with pytest.raises(ValidationError, match=message):
        SlowConfig.model_validate({"trl": trl})


def test_overrides_are_checked_and_trl_errors_are_attributed(tmp_path):
    slow = SlowConfig()
    with pytest.raises(ValueError, match="grpo_config overrides: unknown field 'max_step'"):
        slow.grpo_config(str(tmp_path), max_step=3)
    with pytest.raises(ValueError, match="grpo_config: loss_type 'bnpo' is not supported"):
        slow.grpo_config(str(tmp_path), loss_type="bnpo")
    with pytest.raises(ValueError, match=r"trl.GRPOConfig rejected the slow config.*num_generations"):
        SlowConfig.model_validate({"trl": {"num_generations": 3, "per_device_train_batch_size": 4}}).grpo_config(str(tmp_path))


def test_lora_block_becomes_a_peft_lora_config():
    pytest.importorskip("peft")
    peft_config = SlowConfig.model_validate({"lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}}).peft_config()
    assert type(peft_config).__name__ == "LoraConfig"
    assert (peft_config.r, peft_config.lora_alpha, set(peft_config.target_modules)) == (4, 8, {"q_proj", "v_proj"})
    assert str(peft_config.task_type.value if hasattr(peft_config.task_type, "value") else peft_config.task_type) == "CAUSAL_LM"
    assert SlowConfig().peft_config() is None


def test_lora_without_peft_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_peft(name, *args, **kwargs):
        if name == "peft" or name.startswith("peft."):
            raise ImportError("No module named 'peft'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_peft)
    with pytest.raises(ImportError, match=r"pip install 'fst-agent\[peft\]'"):
        SlowConfig.model_validate({"lora": {"r": 4}}).peft_config()
