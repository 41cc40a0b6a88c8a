"""Fast weights: a reflective Pareto population of contexts (system prompts) that learns from full sandbox
traces, round by round, re-scored whenever the slow weights move.

    fast = FastConfig.model_validate(yaml_dict)
    population = Population.seed({"system_prompt": seed_text})          # or Population.load(run_dir)
    provider = PopulationContextProvider(population, fast.sampling)     # G contexts per problem from top-K
    lm = make_reflection_lm(fast.reflection, policy_complete=fn_or_None)
    optimizer = FastOptimizer(fast, population, evaluator, lm, trace_store=store)
    optimizer.rescore(policy_version=step)                              # after a weight update
    optimizer.run_round(train_tasks, val_tasks, policy_version=step, recent=trajectories)
    population.save(run_dir); optimizer.state_dict()

Modules: ``config`` (the ``fast`` config section), ``population`` (candidates, lineage, scores, JSON),
``pareto`` (frontier, top-K, Kendall's tau), ``sampling`` (contexts into rollouts), ``reflective_dataset``
(whole traces -> records, fitted to a budget), ``reflection_lm`` (OpenAI-compatible / policy clients),
``proposer`` (one reflection call), ``optimizer`` (rounds and re-scoring), ``reports``, and ``gepa_bridge``, the
only module that imports gepa.
"""

from fst_agent.fast.config import (
    FastConfig,
    FeedbackConfig,
    ReflectionConfig,
    RescoreConfig,
    RoundConfig,
    SamplingConfig,
)
from fst_agent.fast.optimizer import Evaluator, FastOptimizer
from fst_agent.fast.population import (
    POPULATION_FILE,
    POPULATION_SCHEMA_VERSION,
    Candidate,
    Population,
    PopulationError,
    ScoreEntry,
)
from fst_agent.fast.reflection_lm import (
    OpenAIReflectionLM,
    PolicyReflectionLM,
    ReflectionLM,
    ReflectionLMError,
    ReflectionLMUnavailable,
    ReflectionReply,
    make_reflection_lm,
)
from fst_agent.fast.reports import RescoreReport, RoundReport
from fst_agent.fast.sampling import PopulationContextProvider

__all__ = [
    "POPULATION_FILE",
    "POPULATION_SCHEMA_VERSION",
    "Candidate",
    "Evaluator",
    "FastConfig",
    "FastOptimizer",
    "FeedbackConfig",
    "OpenAIReflectionLM",
    "PolicyReflectionLM",
    "Population",
    "PopulationContextProvider",
    "PopulationError",
    "ReflectionConfig",
    "ReflectionLM",
    "ReflectionLMError",
    "ReflectionLMUnavailable",
    "ReflectionReply",
    "RescoreConfig",
    "RescoreReport",
    "RoundConfig",
    "RoundReport",
    "SamplingConfig",
    "ScoreEntry",
    "make_reflection_lm",
]
