#!/usr/bin/env bash
# Build the sandbox image without any registry: debootstrap a minimal Debian bookworm with python3,
# add the unprivileged `sandbox` user and its /workspace, and import the tree as a Docker image.
# Same layout as ./Dockerfile (which real users build from python:3.11-slim), so backends treat both alike.
#
# usage: build-offline.sh [IMAGE]   (default fst-agent-sandbox:latest; FST_DEBIAN_MIRROR overrides the mirror)
set -euo pipefail
image="${1:-fst-agent-sandbox:latest}"
mirror="${FST_DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)}"
[ -n "$mirror" ] || { echo "build-offline.sh: no Debian mirror found in /etc/apt; set FST_DEBIAN_MIRROR" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "build-offline.sh: debootstrap is missing (apt-get install -y debootstrap)" >&2; exit 1; }
command -v docker >/dev/null || { echo "build-offline.sh: docker CLI is missing (apt-get install -y docker.io)" >&2; exit 1; }
root="$(mktemp -d /tmp/fst-sandbox-rootfs.XXXXXX)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3 bookworm "$root" "$mirror" >/tmp/fst-debootstrap.log 2>&1 \
  || { echo "build-offline.sh: debootstrap failed, see /tmp/fst-debootstrap.log" >&2; tail -n 20 /tmp/fst-debootstrap.log >&2; exit 1; }
chroot "$root" /usr/sbin/groupadd --gid 1000 sandbox
chroot "$root" /usr/sbin/useradd --uid 1000 --gid 1000 --no-create-home --home-dir /workspace --shell /bin/sh sandbox
mkdir -p "$root/workspace" && chown 1000:1000 "$root/workspace" && chmod 0700 "$root/workspace"
# useradd's backups (passwd-, shadow-, ...) are world-readable copies nobody needs inside a sandbox
rm -f "$root"/etc/passwd- "$root"/etc/group- "$root"/etc/shadow- "$root"/etc/gshadow-
# apt caches and docs are dead weight inside a sandbox
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
tar -C "$root" -c . | docker import \
  --change 'USER sandbox' --change 'WORKDIR /workspace' --change 'ENV PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8' \
  --change 'CMD ["sleep", "infinity"]' - "$image" >/dev/null
echo "built $image ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
