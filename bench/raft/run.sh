#!/usr/bin/env bash
# Raft benchmark: faultline-node (raft role) vs etcd 3.4 (Debian etcd-server), 3 and 5 members
# on loopback, same closed-loop load (targets/node/examples/loadgen.rs), measured in one run.
# Usage: bench/raft/run.sh [CLIENTS] [DURATION_S] [READ_FRACTION]
# Prints one JSON line per (system, size). Needs: cargo, etcd (apt-get install etcd-server).
set -euo pipefail
CLIENTS=${1:-32}
DURATION=${2:-20}
READS=${3:-0.5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release -q -p faultline-node --bin faultline-node --example loadgen
NODE=$CARGO_TARGET_DIR/release/faultline-node
LOADGEN=$CARGO_TARGET_DIR/release/examples/loadgen
WORK=$(mktemp -d /tmp/flbench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

stop_all() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }

run_faultline() {
  local n=$1 peers="" eps=""
  for i in $(seq 1 "$n"); do peers+="n$i=127.44.0.$i:8080,"; eps+="127.44.0.$i:8080,"; done
  peers=${peers%,}; eps=${eps%,}
  for i in $(seq 1 "$n"); do
    RUST_LOG=warn "$NODE" --role raft --id "n$i" --listen "127.44.0.$i:8080" --peers "$peers" \
      --data-dir "$WORK/fl$n-n$i" --admin-token bench 2>"$WORK/fl$n-n$i.log" &
    PIDS+=($!)
  done
  for _ in $(seq 1 100); do
    curl -sf -H 'Authorization: Bearer bench' "127.44.0.1:8080/admin/status" | grep -q '"leader":"n' && break
    sleep 0.1
  done
  "$LOADGEN" --system faultline --endpoints "$eps" --clients "$CLIENTS" --duration-s "$DURATION" \
    --read-fraction "$READS" --label "faultline-$n"
  stop_all
}

run_etcd() {
  local n=$1 cluster="" eps=""
  for i in $(seq 1 "$n"); do cluster+="e$i=http://127.44.1.$i:2380,"; eps+="127.44.1.$i:2379,"; done
  cluster=${cluster%,}; eps=${eps%,}
  for i in $(seq 1 "$n"); do
    etcd --name "e$i" --data-dir "$WORK/etcd$n-e$i" \
      --listen-client-urls "http://127.44.1.$i:2379" --advertise-client-urls "http://127.44.1.$i:2379" \
      --listen-peer-urls "http://127.44.1.$i:2380" --initial-advertise-peer-urls "http://127.44.1.$i:2380" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "bench$n" \
      --logger zap --log-level warn 2>"$WORK/etcd$n-e$i.log" &
    PIDS+=($!)
  done
  for _ in $(seq 1 100); do
    curl -sf -X POST -d '{"key":"aGVhbHRo"}' "127.44.1.1:2379/v3/kv/range" >/dev/null && break
    sleep 0.1
  done
  "$LOADGEN" --system etcd --endpoints "$eps" --clients "$CLIENTS" --duration-s "$DURATION" \
    --read-fraction "$READS" --label "etcd-$n"
  stop_all
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r), clients=$CLIENTS duration=${DURATION}s reads=$READS, etcd $(etcd --version | head -1 | awk '{print $3}')" >&2
for n in 3 5; do
  run_faultline "$n"
  run_etcd "$n"
done
