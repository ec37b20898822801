#!/usr/bin/env bash
# Checker benchmark (not a test; CI does not run it). See docs/benchmarks.md, "## Checker".
#   (a) the whole Porcupine corpus, stop at the first invalid key, best of 3 per file;
#   (b) kv/c50-bad judged key by key with no early stop, with peak memory.
# Usage: bench/checker/run.sh [CORPUS_DIR]   (default: <repo>/../shared/data/porcupine)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
corpus=${1:-$repo/../shared/data/porcupine}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
cargo build --release -q -p faultline-checker --example corpus_bench
bin=$CARGO_TARGET_DIR/release/examples/corpus_bench
echo "== (a) corpus, best of 3 per file"
"$bin" "$corpus" 3 | tail -1
echo "== (b) kv/c50-bad, every key, no early stop (time limit 10 s, memory limit 2 GiB)"
/usr/bin/time -v "$bin" "$corpus" --all-keys kv/c50-bad.txt 10 2> /tmp/checker-bench-time.txt
grep -E "Elapsed|Maximum resident" /tmp/checker-bench-time.txt
