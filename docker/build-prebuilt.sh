#!/bin/sh
# Build Warren's container image without pulling any base image:
#
#   docker/build-prebuilt.sh [TAG]          (default TAG: warren:latest)
#
# 1. cargo builds the static, symbol-stripped binary (about 9 MB; unstripped the image is 40 MB+);
# 2. docker/make-rootfs.sh lays out the image's files in target/docker-rootfs (under target/, so the
#    source tree stays clean);
# 3. the `prebuilt` stage of docker/Dockerfile is built with that directory as the build context.
#
# Needs cargo (with the x86_64-unknown-linux-gnu target and glibc's static libraries, as on Debian)
# and one image builder: buildah, podman or docker, tried in that order, or the one named by
# WARREN_IMAGE_BUILDER. The image keeps the HEALTHCHECK (Docker image format). This is the build
# tests/python/test_container.py runs, so the documented commands are the tested ones.
set -eu
tag=${1:-warren:latest}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
context=$target_dir/docker-rootfs

CARGO_PROFILE_RELEASE_STRIP=symbols RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --bin warren --target x86_64-unknown-linux-gnu
sh docker/make-rootfs.sh "$target_dir/x86_64-unknown-linux-gnu/release/warren" "$context"

builder=${WARREN_IMAGE_BUILDER:-}
if [ -z "$builder" ]; then
  for b in buildah podman docker; do
    if command -v "$b" >/dev/null 2>&1; then builder=$b; break; fi
  done
fi
case "$builder" in
  buildah) set -- buildah bud --format docker ;;
  podman) set -- podman build --format docker ;;
  docker) set -- docker build ;;
  *) echo "build-prebuilt.sh: no image builder: install buildah, podman or docker (or set WARREN_IMAGE_BUILDER)" >&2; exit 1 ;;
esac
"$@" --target prebuilt -f docker/Dockerfile -t "$tag" "$context"
