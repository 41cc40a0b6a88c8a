"""The rollout engine: many multi-turn, tool-using episodes at once, their turns batched onto one generator.

One episode (:meth:`RolloutEngine.run_episode`)::

    env = env_cls(env_config, sandbox=<the shared sandbox, bounded>)
    opening = await env.reset(task)
    prompt = chat.prompt_ids([system(context.text), *opening], tools)     # tokenized once
    loop:
        generation = await turn_queue.submit(ids so far)                  # batched across episodes
        parsed = chat.parse_assistant(chat.decode(generation.token_ids))
        for call in parsed.tool_calls: result = await env.step(call)      # sandbox runs here
        (no call: env.no_tool_call(text))
        env.end_turn(turn + 1)
        stop on env.done, or when the token budget / model context leaves no room
        ids += closing_ids + chat.observation_ids(tool messages)           # never re-tokenized
    final = await env.final_reward()

The ids of an episode are ``prompt_ids`` followed by ``completion_ids`` = every turn's generated ids and the
observation ids between turns, concatenated exactly (:func:`token_view`; ``env_mask`` 1 on generated tokens,
0 on observation tokens). Observations are appended only when another turn follows, so a completion always
ends with a generated token.

Budgets: ``EnvConfig.max_tokens`` bounds prompt + every generated and observation token of the episode (a
turn may generate at most what is left; an observation that would leave no room ends the episode with
``token_limit``); ``RolloutConfig.max_context_tokens`` (default: the generator's) bounds every prompt the
same way. The turn limit is the environment's (``end_turn``).

Infrastructure failures: an episode that ends with status ``sandbox_error`` (a tool's run or the final
judging failed, or no session could be opened) is run again from the start, up to
``RolloutConfig.sandbox_retries`` times, then kept with its reward masked (``final_reward`` None); it is
never scored as the model's failure. An environment that raises (a bug) ends its episode with ``env_error``
(masked, not retried); a failing generator fails the whole call.

Synchronous callers (TRL's ``rollout_func``, gepa's ``evaluate``) use :meth:`RolloutEngine.rollout_sync`,
:meth:`RolloutEngine.run_episodes_sync` or :func:`make_rollout_func` with an
:class:`~fst_agent.aio.EventLoopThread` (no ``asyncio.run`` per call).
"""

from __future__ import annotations

import asyncio
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from fst_agent.context import ContextProvider, SeedContextProvider
from fst_agent.policy.chat import ChatFormat, TokenSequence
from fst_agent.policy.config import RolloutConfig
from fst_agent.policy.generation import Generation, GenerationRequest, Generator, TurnQueue
from fst_agent.sandbox.protocol import Sandbox, SandboxSession, SandboxUnavailable
from fst_agent.sandbox.retry import InfrastructureError
from fst_agent.types import (
    Context,
    EpisodeStatus,
    ExecutionStatus,
    Message,
    Task,
    ToolResult,
    Trajectory,
    Turn,
)

log = structlog.get_logger("fst_agent.rollout")

__all__ = [
    "EpisodeSpec",
    "GenerationFailed",
    "RolloutBatch",
    "RolloutEngine",
    "make_rollout_func",
    "token_view",
]


class GenerationFailed(RuntimeError):
    """The generator raised: a failure of the learner's own machinery, so the whole rollout call fails."""


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to run: the task, the context (system prompt) it runs under, and its bookkeeping."""

    task: Task
    context: Context
    group_id: str | None = None
    step: int | None = None
    episode_id: str | None = None
    #: why the episode runs (``rl``, ``eval``, ``fast_eval``, ...): recorded in ``metadata["purpose"]``, so a run's
    #: trace store can tell training rollouts from evaluations
    purpose: str = "rl"


def token_view(trajectory: Trajectory) -> TokenSequence:
    """The flat token view of a recorded episode: ``prompt_ids`` (from ``metadata["prompt_ids"]``), then each
    turn's generated ids (mask 1, their logprobs) and observation ids (mask 0), exactly as run."""
    prompt = trajectory.metadata.get("prompt_ids")
    if prompt is None:
        raise ValueError(f"episode {trajectory.episode_id} has no metadata['prompt_ids'] (not run by RolloutEngine)")
    seq = TokenSequence(prompt_ids=list(prompt))
    for turn in trajectory.turns:
        seq.add_model(list(turn.completion_token_ids or []), turn.completion_logprobs)
        if turn.observation_token_ids:
            seq.add_observation(list(turn.observation_token_ids))
    return seq


@dataclass
class RolloutBatch:
    """Episodes in input order, with the flat token views TRL's ``rollout_func`` returns."""

    trajectories: list[Trajectory]
    sequences: list[TokenSequence] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.sequences:
            self.sequences = [token_view(t) for t in self.trajectories]

    def __len__(self) -> int:
        return len(self.trajectories)

    @property
    def final_rewards(self) -> list[float | None]:
        return [t.final_reward for t in self.trajectories]

    def to_trl(self) -> dict[str, Any]:
        """The ``rollout_func`` dict: ``prompt_ids``, ``completion_ids``, ``logprobs`` (None unless every
        generated token has one), ``env_mask``; and per-row extras TRL forwards to reward functions:
        ``turn_spans`` ((start, end) of each turn's generated ids in ``completion_ids``), ``turn_rewards``,
        ``final_reward`` (None = masked), ``reward_masked``, ``status``, ``episode_id``, ``context_id``,
        ``group_id``."""
        have_lp = all(s.has_logprobs for s in self.sequences)
        return {
            "prompt_ids": [list(s.prompt_ids) for s in self.sequences],
            "completion_ids": [list(s.completion_ids) for s in self.sequences],
            "logprobs": [list(s.logprobs) for s in self.sequences] if have_lp else None,
            "env_mask": [list(s.env_mask) for s in self.sequences],
            "turn_spans": [[list(span) for span in s.turn_spans] for s in self.sequences],
            "turn_rewards": [t.turn_rewards for t in self.trajectories],
            "final_reward": [t.final_reward for t in self.trajectories],
            "reward_masked": [t.reward_masked for t in self.trajectories],
            "status": [t.status.value if t.status else None for t in self.trajectories],
            "episode_id": [t.episode_id for t in self.trajectories],
            "context_id": [t.context_id for t in self.trajectories],
            "group_id": [t.group_id for t in self.trajectories],
        }


# --------------------------------------------------------------------------------------------------
# sandbox bound
# --------------------------------------------------------------------------------------------------


class _EpisodeSandbox:
    """The shared sandbox as one episode sees it: the episode takes a slot of the engine's bound when it
    first opens a session and keeps it until the episode ends (further sessions of the same episode, e.g.
    the fresh one for final judging, use the same slot, so judging never waits on another episode).
    ``close`` does nothing: the shared sandbox outlives episodes."""

    def __init__(self, inner: Sandbox, slots: asyncio.Semaphore) -> None:
        self._inner = inner
        self._slots = slots
        self._held = False
        self.name = getattr(inner, "name", "sandbox")

    async def open_session(self) -> SandboxSession:
        if not self._held:
            await self._slots.acquire()
            self._held = True
        return await self._inner.open_session()

    async def close(self) -> None:
        return None

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()

    def __getattr__(self, name: str) -> Any:  # config and backend facts of the real sandbox
        return getattr(self._inner, name)


# --------------------------------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------------------------------


class RolloutEngine:
    """Runs episodes of one environment class concurrently, batching their turns onto one generator.

    ``env``: the environment class (or an :class:`~fst_agent.env.registry.EnvironmentInfo`).
    ``env_config``: its config (model, dict or None for defaults); recorded in every trajectory's
    ``metadata["env_config"]`` so that ``fst-agent replay --rerun`` rebuilds the same environment.
    ``generator``: any :class:`Generator`; unless it already is a :class:`TurnQueue` it is wrapped in one
    (``config.max_batch_size``; one batch at a time, or up to ``config.concurrency`` batches in flight for a
    generator with ``continuous_batching = True`` such as :meth:`VLLMGenerator.server`). ``contexts``: who picks each rollout's system prompt (default: the
    environment's ``seed_context`` for all). ``trace_store``: where finished episodes are written (with
    their task). ``policy_version`` is stamped on every trajectory; set it after each weight update.
    """

    def __init__(
        self,
        env: Any,
        *,
        chat: ChatFormat,
        generator: Generator,
        env_config: Any = None,
        sandbox: Sandbox | None = None,
        contexts: ContextProvider | None = None,
        config: RolloutConfig | None = None,
        trace_store: Any = None,
        policy_version: int | str | None = None,
    ) -> None:
        self.env_cls = getattr(env, "cls", env)
        self.env_name: str = getattr(self.env_cls, "name", None) or getattr(env, "name", "env")
        config_class = getattr(self.env_cls, "config_class", None)
        if config_class is not None and not isinstance(env_config, config_class):
            data = env_config.model_dump() if hasattr(env_config, "model_dump") else (env_config or {})
            env_config = config_class.model_validate(data)
        self.env_config = env_config
        self.config = config or RolloutConfig()
        self.chat = chat
        if isinstance(generator, TurnQueue):
            self.queue = generator
        else:  # a generator that batches on its own (a vLLM server) gets every turn as soon as it is ready
            in_flight = self.config.concurrency if getattr(generator, "continuous_batching", False) else 1
            self.queue = TurnQueue(generator, self.config.max_batch_size, max_in_flight=in_flight)
        self.sandbox = sandbox
        self.contexts: ContextProvider = contexts or SeedContextProvider(
            getattr(self.env_cls, "seed_context", "You are a helpful assistant. Use the tools to solve the task.")
        )
        self.trace_store = trace_store
        self.policy_version = policy_version
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._episodes: asyncio.Semaphore | None = None

    # ---- limits --------------------------------------------------------------------------------------

    @property
    def max_tokens(self) -> int | None:
        """The episode token budget (``EnvConfig.max_tokens``)."""
        return getattr(self.env_config, "max_tokens", None)

    @property
    def max_context_tokens(self) -> int | None:
        return self.config.max_context_tokens or getattr(self.queue, "max_context_tokens", None)

    @property
    def sandbox_sessions(self) -> int:
        if self.config.sandbox_sessions is not None:
            return self.config.sandbox_sessions
        cap = getattr(getattr(self.sandbox, "config", None), "max_sessions", None)
        return max(1, int(cap) // 2) if cap else self.config.concurrency

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._slots = asyncio.Semaphore(self.sandbox_sessions)
            self._episodes = asyncio.Semaphore(self.config.concurrency)

    # ---- public API --------------------------------------------------------------------------------

    def group_specs(self, task: Task, group_size: int, *, step: int | None = None,
                    purpose: str = "rl") -> list[EpisodeSpec]:
        """The ``group_size`` episodes of one problem: one ``contexts_for_group`` call, one group id."""
        contexts = self.contexts.contexts_for_group(task, group_size)
        if len(contexts) != group_size:
            raise ValueError(f"context provider gave {len(contexts)} contexts for a group of {group_size}")
        group_id = f"{'-' if step is None else step}:{task.id}:{uuid.uuid4().hex[:8]}"
        return [EpisodeSpec(task=task, context=c, group_id=group_id, step=step, purpose=purpose) for c in contexts]

    async def run_groups(self, tasks: Sequence[Task], group_size: int, *, step: int | None = None) -> list[Trajectory]:
        """``group_size`` episodes of every task, all concurrently; task-major order."""
        specs = [spec for task in tasks for spec in self.group_specs(task, group_size, step=step)]
        return await self.run_episodes(specs)

    async def rollout(self, tasks: Sequence[Task], *, step: int | None = None) -> RolloutBatch:
        """TRL's shape: ``tasks`` already repeated G times contiguously; each run of equal task ids is one
        group (one ``contexts_for_group`` call). One episode per entry, in order."""
        specs: list[EpisodeSpec] = []
        i = 0
        while i < len(tasks):
            j = i
            while j < len(tasks) and tasks[j].id == tasks[i].id:
                j += 1
            specs.extend(self.group_specs(tasks[i], j - i, step=step))
            i = j
        return RolloutBatch(await self.run_episodes(specs))

    async def run_episodes(self, specs: Sequence[EpisodeSpec]) -> list[Trajectory]:
        """Every spec's episode, at most ``config.concurrency`` in flight; results in input order."""
        self._bind_loop()
        assert self._episodes is not None

        async def bounded(spec: EpisodeSpec) -> Trajectory:
            assert self._episodes is not None
            async with self._episodes:
                return await self.run_episode(spec)

        tasks = [asyncio.ensure_future(bounded(s)) for s in specs]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def run_episode(self, spec: EpisodeSpec) -> Trajectory:
        """One episode, retried from the start while it ends in ``sandbox_error`` (see the module doc);
        written to the trace store when one is set."""
        self._bind_loop()
        episode_id = spec.episode_id or uuid.uuid4().hex
        errors: list[str] = []
        attempts = 1 + self.config.sandbox_retries
        traj: Trajectory | None = None
        for attempt in range(1, attempts + 1):
            traj, error = await self._attempt(spec, episode_id)
            if traj.status is not EpisodeStatus.SANDBOX_ERROR:
                break
            errors.append(error or "sandbox_error")
            log.warning("rollout.sandbox_error", episode=episode_id, task=spec.task.id, attempt=attempt,
                        of=attempts, error=error)
        assert traj is not None
        traj.metadata["attempts"] = attempt
        if errors:
            traj.metadata["sandbox_errors"] = errors
        if traj.reward_masked:
            traj.final_reward = None
        if self.trace_store is not None:
            await asyncio.to_thread(self.trace_store.write, traj, spec.task)
        return traj

    # ---- synchronous callers -------------------------------------------------------------------------

    def rollout_sync(self, loop: Any, tasks: Sequence[Task], *, step: int | None = None,
                     timeout: float | None = None) -> RolloutBatch:
        """:meth:`rollout` from a synchronous caller, on ``loop`` (an :class:`~fst_agent.aio.EventLoopThread`)."""
        return loop.run(self.rollout(tasks, step=step), timeout=timeout)

    def run_episodes_sync(self, loop: Any, specs: Sequence[EpisodeSpec], *,
                          timeout: float | None = None) -> list[Trajectory]:
        """:meth:`run_episodes` from a synchronous caller (e.g. gepa's ``evaluate`` with one context)."""
        return loop.run(self.run_episodes(specs), timeout=timeout)

    # ---- one attempt -------------------------------------------------------------------------------

    def _new_trajectory(self, spec: EpisodeSpec, episode_id: str) -> Trajectory:
        env_config = self.env_config.model_dump(mode="json") if hasattr(self.env_config, "model_dump") else self.env_config
        return Trajectory(
            episode_id=episode_id,
            task_id=spec.task.id,
            env=self.env_name,
            context_id=spec.context.id,
            context_text=spec.context.text,
            policy_version=self.policy_version,
            step=spec.step,
            group_id=spec.group_id,
            started_at=time.time(),
            metadata={"env_config": env_config, "context_parent_id": spec.context.parent_id,
                      "purpose": spec.purpose},
        )

    async def _attempt(self, spec: EpisodeSpec, episode_id: str) -> tuple[Trajectory, str | None]:
        """Run the episode once. Returns the trajectory and, for a sandbox_error, what failed."""
        assert self._slots is not None
        t_start = time.perf_counter()
        traj = self._new_trajectory(spec, episode_id)
        box = _EpisodeSandbox(self.sandbox, self._slots) if self.sandbox is not None else None
        env = self.env_cls(self.env_config, sandbox=box)
        status: EpisodeStatus | None = None
        error: str | None = None
        timings = {"reset": 0.0, "generation": 0.0, "tools": 0.0, "final_reward": 0.0}
        try:
            try:
                status = await self._play(env, spec, traj, timings)
                t0 = time.perf_counter()
                final = await env.final_reward()
                timings["final_reward"] = time.perf_counter() - t0
                status = getattr(env, "status", None) or status  # judging may have failed (sandbox_error)
                traj.final_reward = final
            except (SandboxUnavailable, InfrastructureError) as exc:
                status, error = EpisodeStatus.SANDBOX_ERROR, f"{type(exc).__name__}: {exc}"
            except (GenerationFailed, asyncio.CancelledError):
                raise
            except Exception as exc:  # an environment bug: masked, recorded, not retried
                status, error = EpisodeStatus.ENV_ERROR, f"{type(exc).__name__}: {exc}"
                traj.metadata["env_error"] = traceback.format_exc(limit=8)
                log.error("rollout.env_error", episode=episode_id, task=spec.task.id, error=error)
        finally:
            try:
                await env.close()
            except Exception as exc:  # noqa: BLE001 - closing must not lose the episode
                log.warning("rollout.env_close_failed", episode=episode_id, error=str(exc))
            if box is not None:
                box.release()
        if status is EpisodeStatus.SANDBOX_ERROR and error is None:
            error = _sandbox_error_of(traj)
        traj.status = status or (EpisodeStatus.SUBMITTED if env.done else EpisodeStatus.TURN_LIMIT)
        if traj.status.masks_reward:
            traj.final_reward = None
        timings["total"] = time.perf_counter() - t_start
        traj.timings = timings
        return traj, error

    async def _generate(self, request: GenerationRequest) -> Generation:
        try:
            return await self.queue.submit(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise GenerationFailed(f"generation failed: {type(exc).__name__}: {exc}") from exc

    async def _play(self, env: Any, spec: EpisodeSpec, traj: Trajectory, timings: dict[str, float]) -> EpisodeStatus | None:
        """The turn loop. Returns the engine's own stop reason (token limit), or None (the env's status)."""
        chat = self.chat
        sampling = self.config.sampling
        t0 = time.perf_counter()
        opening = await env.reset(spec.task)
        timings["reset"] = time.perf_counter() - t0
        traj.messages = list(opening)
        tools = [spec_.json_schema for spec_ in env.tools()]
        messages = [Message(role="system", content=spec.context.text), *opening]
        seq = TokenSequence(prompt_ids=chat.prompt_ids(messages, tools))
        traj.metadata["prompt_ids"] = list(seq.prompt_ids)
        finish_reasons: list[str] = []
        traj.metadata["finish_reasons"] = finish_reasons
        budget = self.max_tokens
        max_turns = int(getattr(self.env_config, "max_turns", None) or 256)
        context_cap = self.max_context_tokens

        def room(length: int) -> int:
            left = sampling.max_new_tokens
            if budget is not None:
                left = min(left, budget - length)
            if context_cap is not None:
                left = min(left, context_cap - length)
            return left

        stop: EpisodeStatus | None = None
        index = 0
        while not env.done:
            max_new = room(len(seq))
            if max_new <= 0:
                stop = EpisodeStatus.TOKEN_LIMIT
                break
            t0 = time.perf_counter()
            gen = await self._generate(GenerationRequest(prompt_ids=seq.all_ids, sampling=sampling, max_new_tokens=max_new))
            gen_seconds = time.perf_counter() - t0
            timings["generation"] += gen_seconds
            finish_reasons.append(gen.finish_reason)
            text = chat.decode(gen.token_ids)
            parsed = chat.parse_assistant(text, id_prefix=f"t{index}")
            prompt_len = len(seq)
            seq.add_model(list(gen.token_ids), gen.logprobs)

            t0 = time.perf_counter()
            results: list[ToolResult] = []
            follow: list[Message] = []
            reward = 0.0
            if parsed.tool_calls:
                for call in parsed.tool_calls:
                    result = await env.step(call)
                    results.append(result)
                    reward += result.reward
                    follow.append(Message(role="tool", content=result.content, tool_call_id=call.id, name=call.name))
                    if result.sandbox_failed and getattr(env, "status", None) is None and hasattr(env, "finish"):
                        env.finish(EpisodeStatus.SANDBOX_ERROR)  # an env that did not end it itself
            elif gen.finish_reason == "length" and room(len(seq)) <= 0:
                stop = EpisodeStatus.TOKEN_LIMIT  # cut by the budget mid-turn: not the model's choice to stop calling
            elif hasattr(env, "no_tool_call"):
                said, extra = await env.no_tool_call(text)
                follow.extend(said)
                reward += extra
            else:  # a protocol-only environment: a turn without a call ends the episode
                stop = EpisodeStatus.NO_TOOL_CALL
            tool_seconds = time.perf_counter() - t0
            timings["tools"] += tool_seconds
            turn = Turn(
                index=index,
                assistant_text=text,
                thoughts=parsed.thoughts,
                tool_calls=list(parsed.tool_calls),
                tool_results=results,
                reward=reward,
                prompt_token_count=prompt_len,
                completion_token_ids=list(gen.token_ids),
                completion_logprobs=list(gen.logprobs) if gen.logprobs is not None else None,
                generation_seconds=gen_seconds,
                tool_seconds=tool_seconds,
            )
            traj.turns.append(turn)
            index += 1
            if hasattr(env, "end_turn"):
                env.end_turn(index)
            if not env.done and index >= max_turns:
                stop = EpisodeStatus.TURN_LIMIT  # the engine keeps the turn limit too (protocol-only envs)
            if stop is not None or env.done:
                break
            if not follow:  # the env neither ended the episode nor said anything: nothing to continue with
                stop = EpisodeStatus.NO_TOOL_CALL
                break
            obs = chat.closing_ids(list(gen.token_ids)) + chat.observation_ids(follow)
            if room(len(seq) + len(obs)) <= 0:
                stop = EpisodeStatus.TOKEN_LIMIT  # the next prompt would leave no room to generate
                break
            seq.add_observation(obs)
            turn.observation_token_ids = obs
        if stop is not None and hasattr(env, "finish"):
            env.finish(stop)
        return stop


def _sandbox_error_of(traj: Trajectory) -> str | None:
    for turn in traj.turns:
        for r in turn.tool_results:
            if r.execution is not None and r.execution.status is ExecutionStatus.SANDBOX_ERROR:
                return r.execution.error
    return "sandbox_error (final judging)"


# --------------------------------------------------------------------------------------------------
# TRL
# --------------------------------------------------------------------------------------------------


def make_rollout_func(
    engine: RolloutEngine,
    loop: Any,
    task_for_prompt: Callable[[Any], Task],
    *,
    step_of: Callable[[Any], int | None] | None = None,
) -> Callable[[list[Any], Any], dict[str, Any]]:
    """A TRL ``rollout_func(prompts, trainer) -> dict``.

    ``prompts`` arrive already repeated G times contiguously; ``task_for_prompt`` maps each to its Task
    (equal prompts must map to tasks with equal ids). The RL step is ``trainer.state.global_step`` unless
    ``step_of(trainer)`` says otherwise. Returns :meth:`RolloutBatch.to_trl`.
    """

    def rollout_func(prompts: list[Any], trainer: Any) -> dict[str, Any]:
        tasks = [task_for_prompt(p) for p in prompts]
        if step_of is not None:
            step = step_of(trainer)
        else:
            step = getattr(getattr(trainer, "state", None), "global_step", None)
        batch: RolloutBatch = loop.run(engine.rollout(tasks, step=step))
        return batch.to_trl()

    return rollout_func
