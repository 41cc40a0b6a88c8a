"""Generation backends: token ids in, token ids (with their logprobs) out.

The contract is one async call, :meth:`Generator.generate`, over a list of :class:`GenerationRequest`
(prompt token ids + :class:`~fst_agent.policy.config.SamplingConfig`), answered in order with
:class:`Generation` (exactly the generated ids, EOS included when the model stopped; their text; the
sampled tokens' logprobs where the backend knows them; ``finish_reason`` ``stop`` or ``length``). Nothing is
re-tokenized: the rollout engine concatenates these ids with the observation ids of the chat format.

* :class:`TransformersGenerator` - batched ``model.generate`` (left padding) in a worker thread, so that the
  event loop keeps serving sandboxes while the model runs. CPU-friendly; the embedded default.
* :class:`TurnQueue` - collects the turns of many episodes and feeds them to one generator in batches:
  whatever is waiting when the generator frees up forms the next batch, up to ``max_batch_size``
  (continuous-ish batching). Records every batch's size and busy interval.
* :class:`VLLMGenerator` - vLLM, colocated (``vllm.LLM`` in this process) or an external OpenAI-compatible
  server (``/v1/completions`` with token-id prompts), as TRL supports them. ``vllm`` is imported only for
  colocated use (the ``vllm`` extra); server mode needs only ``httpx``.

Logprobs are ``log_softmax(logits / temperature)`` of the sampled token, before top-k/top-p truncation -
what TRL computes for the same tokens (greedy: temperature 1).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import structlog

from fst_agent.policy.config import SamplingConfig

log = structlog.get_logger("fst_agent.policy")

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class GenerationRequest:
    """One assistant turn to generate: the whole context so far as token ids, and how to sample.

    ``max_new_tokens`` (optional) lowers ``sampling.max_new_tokens`` for this request only (the rollout
    engine passes what is left of the episode's token budget)."""

    prompt_ids: list[int]
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    max_new_tokens: int | None = None

    @property
    def budget(self) -> int:
        """The most tokens this request may generate."""
        cap = self.sampling.max_new_tokens
        return cap if self.max_new_tokens is None else max(0, min(cap, self.max_new_tokens))


@dataclass(frozen=True)
class Generation:
    """What one request produced. ``token_ids`` are exactly the generated ids (EOS included when the
    model stopped, never padding); ``logprobs`` align with them (None where the backend has none)."""

    token_ids: list[int]
    text: str
    logprobs: list[float] | None
    finish_reason: FinishReason

    def __post_init__(self) -> None:
        if self.logprobs is not None and len(self.logprobs) != len(self.token_ids):
            raise ValueError(f"{len(self.logprobs)} logprobs for {len(self.token_ids)} generated tokens")


@runtime_checkable
class Generator(Protocol):
    """A generation backend."""

    async def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        """One Generation per request, in order."""
        ...


def _sampling_key(s: SamplingConfig) -> tuple[float, float, int, int | None]:
    # requests that may share one batched call (max_new_tokens differs per request and is cut afterwards)
    return (s.temperature, s.top_p, s.top_k, s.seed)


def group_by_sampling(requests: Sequence[GenerationRequest]) -> list[list[int]]:
    """Indices of ``requests`` grouped by what one batched call can serve (same sampler), in first-seen order."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(_sampling_key(r.sampling), []).append(i)
    return list(groups.values())


def default_eos_token_ids(tokenizer: Any) -> list[int]:
    """``<|im_end|>`` (ChatML's end of turn) when the vocabulary has it, plus the tokenizer's EOS."""
    ids: list[int] = []
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    if "<|im_end|>" in vocab:
        ids.append(int(vocab["<|im_end|>"]))
    eos = getattr(tokenizer, "eos_token_id", None)
    for e in eos if isinstance(eos, list) else [eos]:
        if e is not None and int(e) not in ids:
            ids.append(int(e))
    if not ids:
        raise ValueError("the tokenizer has neither <|im_end|> nor an eos_token_id; pass eos_token_ids")
    return ids


def cut_at_eos(ids: Sequence[int], eos: set[int], budget: int) -> tuple[list[int], FinishReason]:
    """The generated ids up to and including the first EOS, at most ``budget`` of them."""
    out: list[int] = []
    for tok in ids:
        if len(out) >= budget:
            return out, "length"
        out.append(int(tok))
        if tok in eos:
            return out, "stop"
    return out, "length"


# --------------------------------------------------------------------------------------------------
# transformers
# --------------------------------------------------------------------------------------------------


class TransformersGenerator:
    """Batched ``model.generate`` on the model's device, one call at a time, in a worker thread.

    Left padding, ``eos_token_id`` = ``<|im_end|>`` (+ the tokenizer's EOS), ``top_k`` off unless set, a
    fresh :class:`transformers.GenerationConfig` per call (nothing inherited from the checkpoint's
    ``generation_config.json``, e.g. a repetition penalty), logprobs from the raw logits.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        eos_token_ids: Sequence[int] | None = None,
        pad_token_id: int | None = None,
        max_context_tokens: int | None = None,
        skip_special_tokens: bool = True,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.eos_token_ids = list(eos_token_ids) if eos_token_ids is not None else default_eos_token_ids(tokenizer)
        if pad_token_id is None:
            pad_token_id = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id = int(pad_token_id) if pad_token_id is not None else self.eos_token_ids[0]
        limit = max_context_tokens or getattr(getattr(model, "config", None), "max_position_embeddings", None)
        self.max_context_tokens: int | None = int(limit) if limit else None
        self.skip_special_tokens = skip_special_tokens
        self._lock = threading.Lock()
        self._batches = 0
        self.busy_seconds = 0.0
        self.calls = 0

    async def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        if not requests:
            return []
        raw = await asyncio.to_thread(self.generate_sync, requests, decode=False)
        # decoded here, on the caller's thread: a fast tokenizer used from two threads at once can fail
        # ("Already borrowed") when the other thread encodes with padding/truncation settings
        return [dataclasses.replace(g, text=self._decode(g.token_ids)) for g in raw]

    def generate_sync(self, requests: Sequence[GenerationRequest], *, decode: bool = True) -> list[Generation]:
        """The blocking call (what :meth:`generate` runs in a worker thread; there ``decode=False`` and the
        text is filled in afterwards)."""
        out: list[Generation | None] = [None] * len(requests)
        with self._lock:
            t0 = time.perf_counter()
            for group in group_by_sampling(requests):
                batch = [requests[i] for i in group]
                for i, gen in zip(group, self._generate_group(batch), strict=True):
                    out[i] = gen
            self.busy_seconds += time.perf_counter() - t0
            self.calls += 1
        gens = [g for g in out if g is not None]
        return [dataclasses.replace(g, text=self._decode(g.token_ids)) for g in gens] if decode else gens

    def _generate_group(self, batch: list[GenerationRequest]) -> list[Generation]:
        import torch
        from transformers import GenerationConfig

        sampling = batch[0].sampling
        budgets = [r.budget for r in batch]
        empty = Generation(token_ids=[], text="", logprobs=[], finish_reason="length")
        live = [i for i, b in enumerate(budgets) if b > 0 and batch[i].prompt_ids]
        results: list[Generation] = [empty] * len(batch)
        if not live:
            return results
        prompts = [batch[i].prompt_ids for i in live]
        width = max(len(p) for p in prompts)
        device = getattr(self.model, "device", None) or torch.device("cpu")
        input_ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):
            input_ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
            attention[row, width - len(p):] = 1
        max_new = max(budgets[i] for i in live)
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "eos_token_id": self.eos_token_ids,
            "pad_token_id": self.pad_token_id,
            "return_dict_in_generate": True,
            "output_logits": True,
        }
        if sampling.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
        config = GenerationConfig(**kwargs)
        self._batches += 1
        if sampling.seed is not None:
            torch.manual_seed((sampling.seed * 1_000_003 + self._batches) % (2**63))
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), generation_config=config
            )
        new = out.sequences[:, width:].cpu()
        temperature = 1.0 if sampling.greedy else sampling.temperature
        chosen = None
        if out.logits:
            # one step at a time: (B, steps, V) at once would be gigabytes for a real vocabulary
            steps = min(len(out.logits), new.shape[1])
            cols = []
            for t in range(steps):
                logp = torch.log_softmax(out.logits[t].float() / temperature, dim=-1)
                cols.append(logp.gather(-1, new[:, t : t + 1].to(logp.device)).squeeze(-1).cpu())
            chosen = torch.stack(cols, dim=1) if cols else torch.zeros((len(live), 0))
        eos = set(self.eos_token_ids)
        for row, i in enumerate(live):
            ids, reason = cut_at_eos(new[row].tolist(), eos, budgets[i])
            lps = chosen[row, : len(ids)].tolist() if chosen is not None else None
            results[i] = Generation(token_ids=ids, text="", logprobs=lps, finish_reason=reason)
        return results

    def _decode(self, ids: list[int]) -> str:
        body = ids[:-1] if ids and ids[-1] in self.eos_token_ids else ids
        return self.tokenizer.decode(body, skip_special_tokens=self.skip_special_tokens)


# --------------------------------------------------------------------------------------------------
# the turn queue
# --------------------------------------------------------------------------------------------------


@dataclass
class QueueStats:
    """What a :class:`TurnQueue` did: every batch's size and busy interval (perf_counter seconds)."""

    batch_sizes: list[int] = field(default_factory=list)
    intervals: list[tuple[float, float]] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)

    @property
    def busy_seconds(self) -> float:
        """Seconds at least one batch was being generated (overlapping batches counted once)."""
        if not self.intervals:
            return 0.0
        return self.busy_between(min(a for a, _ in self.intervals), max(b for _, b in self.intervals))

    @property
    def requests(self) -> int:
        return sum(self.batch_sizes)

    def busy_between(self, start: float, end: float) -> float:
        """Seconds inside [start, end] during which at least one batch was being generated."""
        total, cursor = 0.0, start
        for a, b in sorted(self.intervals):
            a, b = max(a, cursor), min(b, end)
            if b > a:
                total += b - a
                cursor = b
        return total

    def reset(self) -> None:
        self.batch_sizes.clear()
        self.intervals.clear()
        self.waits.clear()


_Pending = tuple[GenerationRequest, "asyncio.Future[Generation]", float]


class TurnQueue:
    """Batches the turns of many episodes onto one generator.

    ``await queue.submit(request)`` waits for that request's Generation. A serving task takes whatever is
    waiting when the generator frees up (after yielding once to the event loop, so that episodes ready in
    the same instant join), up to ``max_batch_size`` requests, runs ``generator.generate`` on them and
    answers them. ``max_in_flight`` batches may run at once: 1 for a generator that serves one call at a
    time (transformers, colocated vLLM); more for one that batches on its own (a vLLM server), which then
    gets each turn as soon as it is ready. The queue is itself a :class:`Generator` (``generate(list)``
    submits each request).

    A queue serves the event loop it was first used on; ``close()`` stops it.
    """

    def __init__(self, generator: Generator, max_batch_size: int = 8, *, max_in_flight: int = 1) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.generator = generator
        self.max_batch_size = max_batch_size
        self.max_in_flight = max_in_flight
        self.stats = QueueStats()
        self._pending: collections.deque[_Pending] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._server: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def max_context_tokens(self) -> int | None:
        return getattr(self.generator, "max_context_tokens", None)

    def _ensure_server(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._server is None or self._server.done():
            if self._loop is not None and self._loop is not loop and (self._pending or self._running):
                raise RuntimeError("TurnQueue is serving another event loop; create one queue per loop")
            self._loop = loop
            self._wake = asyncio.Event()
            self._slots = asyncio.Semaphore(self.max_in_flight)
            self._server = loop.create_task(self._serve(), name="fst-turn-queue")

    async def submit(self, request: GenerationRequest) -> Generation:
        self._ensure_server()
        assert self._wake is not None and self._loop is not None
        fut: asyncio.Future[Generation] = self._loop.create_future()
        self._pending.append((request, fut, time.perf_counter()))
        self._wake.set()
        return await fut

    async def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        return list(await asyncio.gather(*(self.submit(r) for r in requests)))

    async def _serve(self) -> None:
        assert self._wake is not None and self._slots is not None
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            await self._slots.acquire()  # the generator is free (or has room for another batch)
            await asyncio.sleep(0)  # episodes that became ready in this same instant join the batch
            batch: list[_Pending] = []
            while self._pending and len(batch) < self.max_batch_size:
                item = self._pending.popleft()
                if not item[1].done():  # skip requests whose episode was cancelled
                    batch.append(item)
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run_batch(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        assert self._slots is not None
        t0 = time.perf_counter()
        results: list[Generation] | None = None
        try:
            results = await self.generator.generate([r for r, _, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"generator answered {len(results)} of {len(batch)} requests")
        except asyncio.CancelledError:
            for _, fut, _ in batch:
                if not fut.done():
                    fut.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - delivered to every waiting episode
            for _, fut, _ in batch:
                if not fut.done():
                    fut.set_exception(exc)
            results = None
        finally:
            t1 = time.perf_counter()
            self.stats.batch_sizes.append(len(batch))
            self.stats.intervals.append((t0, t1))
            self.stats.waits.extend(t0 - queued for _, _, queued in batch)
            self._slots.release()
        if results is not None:
            for (_, fut, _), res in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(res)

    async def close(self) -> None:
        """Stop serving; requests still waiting or being generated are cancelled."""
        server, self._server = self._server, None
        while self._pending:
            _, fut, _ = self._pending.popleft()
            if not fut.done():
                fut.cancel()
        tasks = [t for t in [server, *self._running] if t is not None and not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --------------------------------------------------------------------------------------------------
# vLLM
# --------------------------------------------------------------------------------------------------

VLLM_MISSING = (
    "vLLM is not installed: colocated vLLM generation needs the `vllm` extra (pip install 'fst-agent[vllm]', "
    "on Linux with a GPU; see docs for the CPU build). Use TransformersGenerator on CPU, or point "
    "VLLMGenerator.server(...) at a running vLLM server (needs only httpx)."
)


def import_vllm() -> Any:
    """``vllm``, or an ImportError that says what to install."""
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(VLLM_MISSING) from exc
    return vllm


def vllm_sampling_kwargs(sampling: SamplingConfig, budget: int, eos_token_ids: Sequence[int]) -> dict[str, Any]:
    """The sampling parameters of one request, as both ``vllm.SamplingParams`` and the server take them."""
    kwargs: dict[str, Any] = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k if sampling.top_k > 0 else -1,  # vLLM: -1 (or 0 in newer versions) = off
        "max_tokens": budget,
        "stop_token_ids": list(eos_token_ids),
        "logprobs": 0,  # the sampled token's own logprob
        "skip_special_tokens": True,
    }
    if sampling.seed is not None:
        kwargs["seed"] = sampling.seed
    return kwargs


def completions_payload(
    request: GenerationRequest, model: str, eos_token_ids: Sequence[int]
) -> dict[str, Any]:
    """The ``/v1/completions`` body for one request: a token-id prompt, tokens answered as ids."""
    body = {"model": model, "prompt": list(request.prompt_ids), "n": 1, "echo": False,
            "return_tokens_as_token_ids": True}
    body.update(vllm_sampling_kwargs(request.sampling, request.budget, eos_token_ids))
    body["logprobs"] = 1  # OpenAI completions: the chosen token plus the top-1 alternatives
    return body


def parse_completion_choice(choice: dict[str, Any], eos_token_ids: Sequence[int]) -> Generation:
    """A Generation from one ``/v1/completions`` choice (vLLM with ``return_tokens_as_token_ids``)."""
    lp = choice.get("logprobs") or {}
    tokens = lp.get("tokens")
    ids: list[int]
    if choice.get("token_ids") is not None:  # vLLM extension (return_token_ids)
        ids = [int(t) for t in choice["token_ids"]]
    elif tokens is not None:
        ids = []
        for t in tokens:
            if not isinstance(t, str) or not t.startswith("token_id:"):
                raise ValueError(f"completion token {t!r} is not 'token_id:N'; the server must honour "
                                 "return_tokens_as_token_ids (vLLM does)")
            ids.append(int(t.split(":", 1)[1]))
    else:
        raise ValueError("completion choice carries no token ids (need logprobs.tokens or token_ids)")
    logprobs = lp.get("token_logprobs")
    lps = [float(x) for x in logprobs] if logprobs is not None and None not in logprobs else None
    if lps is not None and (len(lps) != len(ids) or not all(math.isfinite(x) for x in lps)):
        lps = None
    finish = "length" if choice.get("finish_reason") == "length" else "stop"
    # vLLM leaves the stop token out of the output when it matched a stop_token_id; put it back so that
    # the ids are exactly what the model produced (the chat format expects the end-of-turn token)
    if finish == "stop" and (not ids or ids[-1] not in eos_token_ids):
        stop = choice.get("stop_reason")
        eos = int(stop) if isinstance(stop, int) and stop in eos_token_ids else eos_token_ids[0]
        ids.append(eos)
        lps = None  # the re-added token has no logprob; a partial list would misalign
    return Generation(token_ids=ids, text=choice.get("text", ""), logprobs=lps, finish_reason=finish)


class VLLMGenerator:
    """vLLM generation, colocated or over HTTP.

    * ``VLLMGenerator.colocate(llm_or_model, eos_token_ids=..., **engine_kwargs)`` - a ``vllm.LLM`` in this
      process (pass one, e.g. TRL's colocated engine, or a model path to build one); needs the ``vllm`` extra.
    * ``VLLMGenerator.server(base_url, model, eos_token_ids=...)`` - an OpenAI-compatible vLLM server
      (``trl vllm-serve`` or ``vllm serve``): ``POST {base_url}/v1/completions`` with token-id prompts and
      ``return_tokens_as_token_ids``; one HTTP request per turn, all in flight at once (the server batches).

    A stop token that vLLM leaves out of its output is put back (that generation then has no logprobs), so
    that ``token_ids`` end in the end-of-turn token as the chat format expects. Logprobs are what vLLM reports (its ``logprobs_mode``).
    """

    def __init__(
        self,
        *,
        eos_token_ids: Sequence[int],
        llm: Any = None,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        max_context_tokens: int | None = None,
    ) -> None:
        if (llm is None) == (base_url is None):
            raise ValueError("VLLMGenerator needs exactly one of llm (colocated) or base_url (server)")
        if not eos_token_ids:
            raise ValueError("VLLMGenerator needs eos_token_ids (e.g. ChatFormat.eos_token_ids)")
        self.eos_token_ids = [int(e) for e in eos_token_ids]
        self.llm = llm
        self.base_url = base_url.rstrip("/") if base_url else None
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.max_context_tokens = max_context_tokens
        #: a server batches on its own: the turn queue sends it each turn as soon as it is ready
        self.continuous_batching = base_url is not None
        self._client: Any = None

    @classmethod
    def colocate(
        cls, llm_or_model: Any, *, eos_token_ids: Sequence[int], max_context_tokens: int | None = None, **engine_kwargs: Any
    ) -> VLLMGenerator:
        """Colocated: ``llm_or_model`` is a ``vllm.LLM`` or a model path/id (then ``vllm.LLM(model, **engine_kwargs)``)."""
        if isinstance(llm_or_model, str):
            vllm = import_vllm()
            llm = vllm.LLM(model=llm_or_model, **engine_kwargs)
        else:
            llm = llm_or_model
        return cls(eos_token_ids=eos_token_ids, llm=llm, max_context_tokens=max_context_tokens)

    @classmethod
    def server(
        cls, base_url: str, model: str, *, eos_token_ids: Sequence[int], api_key: str | None = None,
        timeout_s: float = 600.0, max_context_tokens: int | None = None,
    ) -> VLLMGenerator:
        """An OpenAI-compatible server at ``base_url`` (``http://host:port``, with or without ``/v1``)."""
        url = base_url.rstrip("/")
        url = url[: -len("/v1")] if url.endswith("/v1") else url
        return cls(eos_token_ids=eos_token_ids, base_url=url, model=model, api_key=api_key, timeout_s=timeout_s,
                   max_context_tokens=max_context_tokens)

    async def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        if not requests:
            return []
        if self.llm is not None:
            return await asyncio.to_thread(self._generate_colocated, requests)
        return list(await asyncio.gather(*(self._complete(r) for r in requests)))

    # ---- colocated ----------------------------------------------------------------------------------

    def _generate_colocated(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        vllm = import_vllm()
        prompts = [{"prompt_token_ids": list(r.prompt_ids)} for r in requests]
        params = [vllm.SamplingParams(**vllm_sampling_kwargs(r.sampling, max(1, r.budget), self.eos_token_ids))
                  for r in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        results = []
        for out in outputs:
            c = out.outputs[0]
            ids = [int(t) for t in c.token_ids]
            lps = None
            if c.logprobs is not None:
                lps = [float(step[t].logprob) if t in step else None for t, step in zip(ids, c.logprobs, strict=False)]
            choice = {"token_ids": ids, "text": c.text, "finish_reason": c.finish_reason,
                      "stop_reason": getattr(c, "stop_reason", None),
                      "logprobs": {"token_logprobs": lps} if lps is not None else None}
            results.append(parse_completion_choice(choice, self.eos_token_ids))
        return results

    # ---- server -------------------------------------------------------------------------------------

    def _http(self) -> Any:
        if self._client is None:
            try:
                import httpx
            except ImportError as exc:  # pragma: no cover - httpx comes with huggingface_hub
                raise ImportError("VLLMGenerator.server needs httpx (pip install httpx)") from exc
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.AsyncClient(base_url=self.base_url or "", headers=headers, timeout=self.timeout_s)
        return self._client

    async def _complete(self, request: GenerationRequest) -> Generation:
        if request.budget <= 0:
            return Generation(token_ids=[], text="", logprobs=[], finish_reason="length")
        body = completions_payload(request, self.model or "", self.eos_token_ids)
        response = await self._http().post("/v1/completions", json=body)
        if response.status_code != 200:
            raise RuntimeError(
                f"vLLM server {self.base_url} answered {response.status_code} to /v1/completions: {response.text[:500]}"
            )
        data = response.json()
        return parse_completion_choice(data["choices"][0], self.eos_token_ids)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
