"""Finding environments: the entry-point group ``fst_agent.environments`` or ``path/to/file.py:ClassName``.

A plugin that fails to import, or whose object is not an environment, gets one :class:`EnvironmentLoadError`
naming the entry point, its distribution and the cause; every other plugin keeps working.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

ENTRY_POINT_GROUP = "fst_agent.environments"
_REQUIRED = ("reset", "tools", "step", "final_reward")


class EnvironmentLoadError(RuntimeError):
    """An environment could not be loaded; the message names the culprit and the cause."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"environment {source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass(frozen=True)
class EnvironmentInfo:
    """A loaded environment class and where it came from."""

    name: str
    cls: type
    package: str
    source: str

    @property
    def description(self) -> str:
        text = getattr(self.cls, "description", "") or inspect.getdoc(self.cls) or ""
        return text.strip().splitlines()[0] if text.strip() else ""

    @property
    def tool_names(self) -> list[str]:
        specs = getattr(self.cls, "tool_specs", None)
        return [s.name for s in specs()] if callable(specs) else []


@dataclass
class Discovery:
    """The outcome of scanning the entry points: what loaded, and what failed (with why)."""

    environments: dict[str, EnvironmentInfo] = field(default_factory=dict)
    errors: dict[str, EnvironmentLoadError] = field(default_factory=dict)


def check_environment_class(obj: Any, source: str) -> type:
    """The class itself if it satisfies the Environment protocol, else an EnvironmentLoadError saying what is missing."""
    if not inspect.isclass(obj):
        raise EnvironmentLoadError(source, f"is {type(obj).__name__}, not a class implementing the Environment protocol")
    missing = [m for m in _REQUIRED if not callable(getattr(obj, m, None))]
    if not hasattr(obj, "done"):
        missing.append("done")
    if missing:
        raise EnvironmentLoadError(source, f"class {obj.__qualname__} lacks {', '.join(missing)} of the Environment protocol")
    if inspect.isabstract(obj):
        abstract = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise EnvironmentLoadError(source, f"class {obj.__qualname__} is abstract (implement {abstract})")
    if not isinstance(getattr(obj, "name", None), str) or not obj.name:
        raise EnvironmentLoadError(source, f"class {obj.__qualname__} needs a class attribute `name`")
    return obj


def _summarize(exc: BaseException) -> str:
    # the last frame is where it broke; the full traceback goes to the log, not the user's face
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _dist_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else "?"


class EnvironmentRegistry:
    """Looks environments up by name (entry points) or path. No global state: create one where needed."""

    def __init__(self, group: str = ENTRY_POINT_GROUP) -> None:
        self.group = group
        self._discovery: Discovery | None = None

    def _entry_points(self) -> list[EntryPoint]:
        return sorted(entry_points(group=self.group), key=lambda ep: ep.name)

    def discover(self, refresh: bool = False) -> Discovery:
        """Load every registered environment; failures are collected, never raised."""
        if self._discovery is not None and not refresh:
            return self._discovery
        found = Discovery()
        for ep in self._entry_points():
            try:
                info = self._load_entry_point(ep)
            except EnvironmentLoadError as exc:
                found.errors[ep.name] = exc
                continue
            if info.name in found.environments:
                other = found.environments[info.name]
                found.errors[ep.name] = EnvironmentLoadError(
                    f"'{ep.name}' ({ep.value}, package {info.package})",
                    f"name clashes with {other.source} (package {other.package})",
                )
                continue
            found.environments[info.name] = info
        self._discovery = found
        return found

    def _load_entry_point(self, ep: EntryPoint) -> EnvironmentInfo:
        source = f"'{ep.name}' ({ep.value}, package {_dist_name(ep)})"
        try:
            obj = ep.load()
        except Exception as exc:
            raise EnvironmentLoadError(source, f"failed to import: {_summarize(exc)}") from exc
        cls = check_environment_class(obj, source)
        return EnvironmentInfo(name=ep.name, cls=cls, package=_dist_name(ep), source=ep.value)

    def load(self, spec: str) -> EnvironmentInfo:
        """``spec`` is a registered name or ``path/to/file.py:ClassName``."""
        if ":" in spec and (spec.split(":", 1)[0].endswith(".py") or "/" in spec):
            return load_from_path(spec)
        found = self.discover()
        if spec in found.environments:
            return found.environments[spec]
        if spec in found.errors:
            raise found.errors[spec]
        known = ", ".join(sorted(found.environments)) or "none registered"
        raise EnvironmentLoadError(
            f"'{spec}'",
            f"no such environment (known: {known}); register one under the entry-point group "
            f"'{self.group}' or pass path/to/file.py:ClassName",
        )


def load_from_path(spec: str) -> EnvironmentInfo:
    """Import ``path/to/file.py:ClassName`` as a module of its own and return the class."""
    path_text, _, class_name = spec.rpartition(":")
    source = f"'{spec}'"
    if not path_text or not class_name:
        raise EnvironmentLoadError(source, "expected path/to/file.py:ClassName")
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise EnvironmentLoadError(source, f"file {path} does not exist")
    module_name = f"fst_agent_user_env_{abs(hash(str(path))):x}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise EnvironmentLoadError(source, f"cannot import {path} as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses/pydantic resolve annotations through sys.modules
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise EnvironmentLoadError(source, f"failed to import: {_summarize(exc)}") from exc
    if not hasattr(module, class_name):
        raise EnvironmentLoadError(source, f"{path.name} defines no {class_name!r}")
    cls = check_environment_class(getattr(module, class_name), source)
    return EnvironmentInfo(name=cls.name, cls=cls, package=f"file {path}", source=spec)
