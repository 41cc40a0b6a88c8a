"""``fst-agent train --num-processes N``: relaunch the same command under ``accelerate launch``.

Data parallelism is accelerate's (DDP; DeepSpeed ZeRO or FSDP with ``--accelerate-config``), never ours. On a
machine without a GPU the processes run on CPU with gloo: ``--multi_gpu`` plus ``ACCELERATE_USE_CPU=1`` — the
launcher's own ``--cpu --num_processes N`` silently starts ONE process (no MPI hostfile), so it is never used.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["LAUNCH_OPTIONS", "accelerate_command", "free_port", "launch_data_parallel", "without_options"]

#: the train command's options that choose the launch, not the run (dropped from what each process receives)
LAUNCH_OPTIONS = ("--num-processes", "--accelerate-config")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for the rendezvous of one launch)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accelerate_command(num_processes: int, target: Sequence[str], *, config_file: str | Path | None = None,
                       port: int | None = None, python: str | None = None) -> list[str]:
    """``python -m accelerate.commands.launch ... <target>`` for ``num_processes`` local processes; ``target`` is
    what each process runs: ``["-m", "fst_agent.cli", "train", ...]`` or ``["script.py", ...]``.

    Without ``config_file``: ``--multi_gpu --num_processes N --num_machines 1 --mixed_precision no
    --dynamo_backend no`` (on CPU set ``ACCELERATE_USE_CPU=1`` in the environment: :func:`launch_data_parallel`
    does). With one: that file (``configs/accelerate/*.yaml``: DDP, DeepSpeed ZeRO-2/3, FSDP) plus
    ``--num_processes N``."""
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    cmd = [python or sys.executable, "-m", "accelerate.commands.launch"]
    if config_file is not None:
        cmd += ["--config_file", str(config_file), "--num_processes", str(num_processes)]
    else:
        cmd += ["--multi_gpu", "--num_processes", str(num_processes), "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no"]
    cmd += ["--main_process_port", str(port or free_port()), *target]
    return cmd


def without_options(argv: Sequence[str], names: Sequence[str] = LAUNCH_OPTIONS) -> list[str]:
    """``argv`` without the options ``names`` (``--name value`` or ``--name=value``)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif not any(arg.startswith(f"{name}=") for name in names):
            out.append(arg)
    return out


def launch_data_parallel(num_processes: int, train_args: Sequence[str], *, config_file: str | Path | None = None,
                         env: dict[str, str] | None = None) -> int:
    """Run ``fst-agent train <train_args>`` in ``num_processes`` processes; returns the launcher's exit code.

    ``train_args`` are the train command's own options (without ``--num-processes``). Without a GPU the
    processes use the CPU (``ACCELERATE_USE_CPU=1``) and one thread each (``OMP_NUM_THREADS=1`` unless set)."""
    import torch

    environ = {**os.environ, **(env or {})}
    if not torch.cuda.is_available():
        environ["ACCELERATE_USE_CPU"] = "1"
        environ.setdefault("OMP_NUM_THREADS", "1")
    cmd = accelerate_command(num_processes, ["-m", "fst_agent.cli", "train", *train_args], config_file=config_file)
    return subprocess.call(cmd, env=environ)
