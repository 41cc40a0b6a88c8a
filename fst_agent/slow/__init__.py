"""Slow weights: GRPO on the model's parameters (TRL's GRPOTrainer) with turn-level credit assignment and
KL to the base model measured every step.

```python
from fst_agent.slow import SlowConfig, FSTGRPOTrainer
slow = SlowConfig.model_validate(yaml_dict)
args = slow.grpo_config(output_dir="run/trl", max_steps=100)
trainer = FSTGRPOTrainer(model=model, processing_class=tokenizer, args=args, slow_config=slow,
                         rollout_func=rollout_func, train_dataset=dataset)
trainer.train()
```
"""

from fst_agent.slow.advantages import (
    GroupAdvantages,
    compute_advantages,
    outcome_advantages,
    token_advantages,
)
from fst_agent.slow.config import AdvantageConfig, LoraSettings, SlowConfig
from fst_agent.slow.kl import per_token_kl, resolve_kl_source
from fst_agent.slow.rollouts import RolloutOutputError, check_rollout_output
from fst_agent.slow.trainer import FSTGRPOTrainer, final_reward

__all__ = [
    "AdvantageConfig",
    "FSTGRPOTrainer",
    "GroupAdvantages",
    "LoraSettings",
    "RolloutOutputError",
    "SlowConfig",
    "check_rollout_output",
    "compute_advantages",
    "final_reward",
    "outcome_advantages",
    "per_token_kl",
    "resolve_kl_source",
    "token_advantages",
]
