"""Package data: ``configs/`` and ``sandboxes/`` sit at the top of the repository and ship inside the
wheel as ``fst_agent/_data/``. This finds them in either layout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_path(*parts: str) -> Path:
    """Path of a shipped resource, e.g. ``resource_path("sandboxes", "docker", "Dockerfile")``."""
    for base in (_PACKAGE / "_data", _PACKAGE.parent):
        candidate = base.joinpath(*parts)
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"fst-agent resource {'/'.join(parts)} not found in {_PACKAGE / '_data'} or {_PACKAGE.parent}; "
        "is the installation complete?"
    )
