#!/bin/sh
# What the container tests (tests/python/test_container.py, test_compose_recipes.py) need to build
# and run Warren's image without a Docker engine: buildah (builds docker/Dockerfile's `prebuilt`
# stage), podman (runs it), runc (the OCI runtime the tests name: podman's default, crun, may not
# run containers inside another container) and podman-compose (runs docker/compose.yml).
# Installed from Debian's packages when missing, as root with apt-get; otherwise exits 1 saying
# what is missing, and the container tests then fail.
set -eu
missing=
for tool in buildah podman runc podman-compose; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-container-tools.sh: missing:$missing; install them (Debian: apt-get install buildah podman runc podman-compose) or run this as root on Debian" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
apt-get install -y -q $missing >/dev/null 2>&1 \
  || { apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null; } \
  || { echo "install-container-tools.sh: apt-get install$missing failed" >&2; exit 1; }
