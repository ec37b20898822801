#!/usr/bin/env bash
# Builds the image faultline-node:local from this repository: a static faultline-node on
# `FROM scratch`. No registry is contacted. The explicit --target keeps build scripts and
# proc-macros dynamically linked while the node itself is static.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-gnu
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$triple" -p faultline-node
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp docker/Dockerfile "$ctx/"
cp "target/$triple/release/faultline-node" "$ctx/"
docker build -q -t faultline-node:local "$ctx"
