"""The scaling configs parse: accelerate's files name a distributed type accelerate knows, the run recipes validate
as run configs, and their global batch splits evenly over the processes their launch line names."""

from __future__ import annotations

import re

import pytest
import yaml

from fst_agent.loop.config import load_run_config
from tests.conftest import REPO

ACCELERATE = REPO / "configs" / "accelerate"


@pytest.mark.parametrize("name", ["cpu-2proc.yaml", "ddp.yaml", "deepspeed-zero2.yaml", "deepspeed-zero3.yaml",
                                  "fsdp.yaml"])
def test_accelerate_configs_are_what_accelerate_reads(name):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType

    data = yaml.safe_load((ACCELERATE / name).read_text())
    assert DistributedType(data["distributed_type"]) in (DistributedType.MULTI_GPU, DistributedType.DEEPSPEED,
                                                          DistributedType.FSDP)
    config = ClusterConfig.from_yaml_file(str(ACCELERATE / name))  # accelerate's own parser: unknown keys fail
    assert config.num_processes >= 2


@pytest.mark.parametrize("name", ["recipe-8gpu-vllm-colocate.yaml", "recipe-8gpu-vllm-server.yaml"])
def test_multi_gpu_recipes_validate_and_split_over_their_processes(name):
    text = (ACCELERATE / name).read_text()
    config = load_run_config(ACCELERATE / name)
    processes = int(re.search(r"--num_processes (\d+)", text).group(1))
    assert (config.loop.problems_per_step * config.loop.group_size) % processes == 0
    assert config.slow.trl["use_vllm"] is True and config.slow.trl["vllm_mode"] in name
    assert config.model.name  # a real run names its model (server mode needs the served name)


def test_the_relaunch_drops_only_the_launch_options():
    from fst_agent.loop.launch import accelerate_command, without_options

    argv = ["--config", "c.yaml", "--num-processes", "2", "--accelerate-config=x.yaml", "--output", "runs/a", "--quiet"]
    assert without_options(argv) == ["--config", "c.yaml", "--output", "runs/a", "--quiet"]
    cmd = accelerate_command(2, ["-m", "fst_agent.cli", "train", "--quiet"], port=29500, python="py")
    assert cmd[:3] == ["py", "-m", "accelerate.commands.launch"] and "--cpu" not in cmd
    assert cmd[cmd.index("--num_processes") + 1] == "2" and "--multi_gpu" in cmd
    assert cmd[-4:] == ["-m", "fst_agent.cli", "train", "--quiet"]
