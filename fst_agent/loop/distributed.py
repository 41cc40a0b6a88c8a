"""Data-parallel runs: this process's rank and the few collectives the FST loop needs.

A run launched by ``accelerate launch`` (DDP, DeepSpeed ZeRO, FSDP) or ``torchrun`` has ``WORLD_SIZE > 1`` in
its environment; every rank then runs the same :class:`~fst_agent.loop.trainer.FSTRun` and TRL trains on the
union of their rows. What the loop adds to TRL's own data parallelism:

* **One problem list per step, split by rows.** The main process builds the step's episode specs (problem,
  context, group id: the same ones a single process would build, in the same order) and broadcasts them; rank
  ``r`` runs rows ``[r*B, (r+1)*B)``, exactly the rows TRL's sampler hands it. A problem's group may span
  ranks; the slow trainer gathers rewards and turn rewards before normalizing (``fst_agent.slow.trainer``).
* **Fast weights on the main process.** Fast rounds, evaluation, plots and metrics run there; after a round
  the population (and the context sampler's state) is broadcast, so every rank holds the same one.
* **One trace-store writer.** Only the main process opens ``traces.sqlite``; the other ranks' episodes are
  gathered to it after every step and written there (SQLite is never written by two processes).
* **Checkpoints.** TRL saves its part on every rank (weights and optimizer from the main process, one RNG file
  per rank); ranks meet at a barrier before the main process writes ``fst_state.json`` (which marks the
  checkpoint complete), so a complete checkpoint always holds every rank's files.

Collectives go through ``torch.distributed`` (gloo on CPU, NCCL on GPUs), initialized by accelerate's
``PartialState`` as TRL's ``GRPOConfig`` would, but with a longer collective timeout (``FST_DP_TIMEOUT_S``,
default 4 hours, instead of torch's 30 minutes): the other ranks wait in a broadcast while the main process runs
a fast round, which can take that long on a real run. With one process every call is a local no-op.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import structlog

log = structlog.get_logger(__name__)

__all__ = ["DEFAULT_TIMEOUT_S", "Ranks", "launched_world_size"]

#: how long a rank waits in a collective (e.g. for the main process's fast round) before the job fails
DEFAULT_TIMEOUT_S = 4 * 3600


def launched_world_size() -> int:
    """The number of processes the launcher started (``WORLD_SIZE``; 1 when not launched)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


class Ranks:
    """Where this process stands among the data-parallel ranks, and the collectives the loop uses.

    ``Ranks()`` joins the launcher's process group (``torch.distributed`` through accelerate's ``PartialState``,
    CPU/gloo when no GPU is present) when ``WORLD_SIZE > 1``; otherwise it is the single-process view.
    Every collective must be called by every rank in the same order."""

    def __init__(self) -> None:
        self.world_size = launched_world_size()
        self.rank = 0
        self.backend: str | None = None
        if self.world_size > 1:
            import torch
            from accelerate import PartialState

            timeout = timedelta(seconds=float(os.environ.get("FST_DP_TIMEOUT_S", DEFAULT_TIMEOUT_S)))
            state = PartialState(cpu=not torch.cuda.is_available(), timeout=timeout)
            if state.num_processes != self.world_size:
                raise RuntimeError(f"WORLD_SIZE={self.world_size} but accelerate joined {state.num_processes} "
                                   "process(es); launch with `accelerate launch --multi_gpu --num_processes N` "
                                   "(plus ACCELERATE_USE_CPU=1 on CPU) or `torchrun --nproc_per_node N`")
            self.rank = state.process_index
            self.backend = state.backend
            log.info("dp.joined", rank=self.rank, world_size=self.world_size, backend=self.backend,
                     distributed_type=str(state.distributed_type))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """The main process's ``obj`` on every rank (what other ranks pass is ignored)."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` in rank order on the main process; None on the others."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def rows(self, total: int) -> slice:
        """This rank's rows of a batch of ``total`` rows split evenly in rank order (TRL's split)."""
        if total % self.world_size:
            raise ValueError(f"{total} rows do not split evenly over {self.world_size} processes")
        per = total // self.world_size
        return slice(self.rank * per, (self.rank + 1) * per)

    def suffixed(self, path: os.PathLike[str] | str) -> str:
        """``path`` for this rank's own copy of a per-process file (``events.jsonl`` -> ``events-rank1.jsonl``);
        unchanged on the main process."""
        p = os.fspath(path)
        if self.is_main:
            return p
        stem, dot, ext = p.rpartition(".")
        return f"{stem}-rank{self.rank}.{ext}" if dot else f"{p}-rank{self.rank}"
