"""Build the fst-agent e2b template with the e2b SDK's Template API (needs E2B_API_KEY and network).

    python sandboxes/e2b/build_template.py [NAME]     # default name: fst-agent-sandbox

Then run with ``SandboxConfig(backend="e2b", e2b_template=NAME)`` (CLI: ``--backend e2b``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from e2b import Template


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "fst-agent-sandbox"
    template = Template().from_dockerfile(str(Path(__file__).with_name("e2b.Dockerfile")))
    info = Template.build(template, name, cpu_count=2, memory_mb=2048, on_build_logs=lambda e: print(e))
    print(f"built e2b template {name}: {info}")


if __name__ == "__main__":
    main()
