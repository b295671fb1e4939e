#!/usr/bin/env bash
# reshard.sh — throughput and p99 latency through slotgate in steady state vs during a reshard.
#
# Starts a throwaway 3-master Redis Cluster on loopback (ports BASE..BASE+2, bus +10000), slotgate
# in front of it, pre-fills KEYS keys, then runs redis-benchmark (SET+GET, random keys) twice
# for the same number of requests: once with a steady topology, once while
# `redis-cli --cluster reshard` moves SLOTS slots between masters. Prints both rows and counts
# the error replies redis-benchmark saw (expected: 0; MOVED/ASK never reach the client).
#
# Usage: benches/reshard.sh            (env: BASE=7300 SLOTS=4000 N=400000 CLIENTS=50 PIPELINE=1)
# Needs redis-server, redis-cli, redis-benchmark and a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BASE=${BASE:-7300}
SLOTS=${SLOTS:-4000}
N=${N:-400000}
CLIENTS=${CLIENTS:-50}
PIPELINE=${PIPELINE:-1}
KEYS=${KEYS:-100000}
PROXY_PORT=$((BASE + 50))
DIR=$(mktemp -d /tmp/slotgate-reshard.XXXXXX)
BIN=target/release/slotgate
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

[[ -x $BIN ]] || cargo build --release
for i in 0 1 2; do
    port=$((BASE + i))
    mkdir -p "$DIR/$port"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$DIR/$port" --cluster-enabled yes \
        --cluster-config-file nodes.conf --save '' --appendonly no --daemonize no \
        >"$DIR/$port/log" 2>&1 &
    PIDS+=($!)
done
for i in 0 1 2; do
    until redis-cli -p $((BASE + i)) ping >/dev/null 2>&1; do sleep 0.1; done
done
redis-cli --cluster create 127.0.0.1:$BASE 127.0.0.1:$((BASE + 1)) 127.0.0.1:$((BASE + 2)) \
    --cluster-yes >"$DIR/create.log"
until redis-cli -p "$BASE" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
sleep 1

"$BIN" --listen 127.0.0.1:$PROXY_PORT --cluster 127.0.0.1:$BASE --workers 1 --log-level warn \
    >"$DIR/proxy.log" 2>&1 &
PIDS+=($!)
until redis-cli -p $PROXY_PORT ping >/dev/null 2>&1; do sleep 0.1; done
redis-benchmark -p $PROXY_PORT -t set -n "$KEYS" -r "$KEYS" -c 50 -P 100 -q >/dev/null

bench() { # label → one line: label, rps set, p99 set, rps get, p99 get, errors
    local label=$1 out
    out=$(redis-benchmark -p $PROXY_PORT -t set,get -n "$N" -r "$KEYS" -c "$CLIENTS" \
        -P "$PIPELINE" --csv 2>"$DIR/bench.err")
    local errors
    errors=$(grep -c "Error" "$DIR/bench.err" || true)
    echo "$out" | awk -F'","' -v label="$label" -v errors="$errors" '
        /^"SET"/ { gsub(/"/, "", $2); gsub(/"/, "", $7); set = $2; setp99 = $7 }
        /^"GET"/ { gsub(/"/, "", $2); gsub(/"/, "", $7); get = $2; getp99 = $7 }
        END { printf "| %s | %s | %s | %s | %s | %s |\n", label, set, setp99, get, getp99, errors }'
}

echo "| phase | SET rps | SET p99 ms | GET rps | GET p99 ms | error replies |"
echo "|---|---:|---:|---:|---:|---:|"
bench steady
FROM=$(redis-cli -p "$BASE" cluster myid)
TO=$(redis-cli -p $((BASE + 1)) cluster myid)
redis-cli --cluster reshard 127.0.0.1:$BASE --cluster-from "$FROM" --cluster-to "$TO" \
    --cluster-slots "$SLOTS" --cluster-yes >"$DIR/reshard.log" 2>&1 &
RESHARD=$!
bench "during reshard of $SLOTS slots"
if kill -0 "$RESHARD" 2>/dev/null; then
    echo "(the reshard was still running when the measurement ended)"
fi
wait "$RESHARD" || { echo "reshard failed:"; tail -5 "$DIR/reshard.log"; }
redis-cli -p $PROXY_PORT info stats | grep -E "redirects|retries|failed|refreshes" | tr -d '\r'
