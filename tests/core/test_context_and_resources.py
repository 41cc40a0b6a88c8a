import pytest

from fst_agent.context import ContextProvider, SeedContextProvider
from fst_agent.resources import resource_path
from fst_agent.types import Task


def test_seed_provider_gives_every_rollout_the_seed_context():
    provider = SeedContextProvider("Solve it.")
    assert isinstance(provider, ContextProvider)
    contexts = provider.contexts_for_group(Task(id="t", env="apps", prompt="p"), 4)
    assert [c.text for c in contexts] == ["Solve it."] * 4 and contexts[0].id == "seed"
    with pytest.raises(ValueError):
        provider.contexts_for_group(Task(id="t", env="apps", prompt="p"), 0)


def test_shipped_resources_are_found():
    assert resource_path("sandboxes", "docker", "build-offline.sh").is_file()
    with pytest.raises(FileNotFoundError, match="not found"):
        resource_path("sandboxes", "no-such-thing")
