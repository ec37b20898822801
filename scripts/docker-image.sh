#!/usr/bin/env bash
# Builds the image faultline-node:local from this repository: a static faultline-node on
# `FROM scratch`. No registry is contacted. The explicit --target keeps build scripts and
# proc-macros dynamically linked while the node itself is static.
#
# FAULTLINE_SOURCE_HASH (set by `faultline run --runtime docker`, which computes it from the
# node's sources) becomes the image label faultline.source-hash: the harness rebuilds the
# image when the label no longer matches the sources. Built by hand, the image has no label
# and the next docker run rebuilds it once (cargo has nothing to do then: seconds).
# The binary lands in $CARGO_TARGET_DIR (default: target/).
set -euo pipefail
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-target}
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$triple" -p faultline-node \
  --target-dir "$target_dir"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp docker/Dockerfile "$ctx/"
cp "$target_dir/$triple/release/faultline-node" "$ctx/"
# A static binary must not need a loader: refuse to package a dynamic one.
if file "$ctx/faultline-node" 2>/dev/null | grep -q 'dynamically linked'; then
  echo "faultline-node is dynamically linked; the FROM scratch image cannot run it" >&2
  exit 1
fi
labels=()
if [[ -n "${FAULTLINE_SOURCE_HASH:-}" ]]; then
  labels=(--label "faultline.source-hash=$FAULTLINE_SOURCE_HASH")
fi
old=$(docker image inspect -f '{{.Id}}' faultline-node:local 2>/dev/null || true)
docker build -q "${labels[@]}" -t faultline-node:local "$ctx"
# The image this build replaced is now untagged: remove it unless a container still uses it
# (plain rmi refuses then), so rebuilds do not pile up dangling images.
new=$(docker image inspect -f '{{.Id}}' faultline-node:local)
if [[ -n "$old" && "$old" != "$new" ]]; then
  docker rmi "$old" >/dev/null 2>&1 || true
fi
