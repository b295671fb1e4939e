#!/usr/bin/env bash
# reshard.sh — throughput and p99 latency through slotgate in steady state vs during a reshard.
#
# Starts a throwaway 3-master Redis Cluster on loopback (ports BASE..BASE+2, bus +10000), slotgate
# in front of it, pre-fills KEYS keys, then runs redis-benchmark (SET+GET, random keys) twice
# per workload (SET, then GET) for the same number of requests: once with a steady topology,
# once while `redis-cli --cluster reshard` moves SLOTS slots between masters (there and back).
# Prints the rows with the error replies redis-benchmark saw (expected: 0; MOVED/ASK never reach
# the client) and whether the reshard ran for the whole measurement.
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

# One redis-benchmark run of TEST (set or get); prints "rps p99 errors".
bench() {
    local test=$1 out errors
    out=$(redis-benchmark -p $PROXY_PORT -t "$test" -n "$N" -r "$KEYS" -c "$CLIENTS" \
        -P "$PIPELINE" --csv 2>"$DIR/bench.err")
    errors=$(grep -c "Error" "$DIR/bench.err" || true)
    echo "$out" | awk -F'","' -v errors="$errors" 'NR == 2 {
        gsub(/"/, "", $2); gsub(/"/, "", $7); printf "%s %s %s", $2, $7, errors }'
}

# Move SLOTS slots from node $1 to node $2 in the background; sets RESHARD (pid), T0.
reshard_start() {
    local from to
    from=$(redis-cli -p "$1" cluster myid)
    to=$(redis-cli -p "$2" cluster myid)
    T0=$(date +%s.%N)
    redis-cli --cluster reshard 127.0.0.1:$1 --cluster-from "$from" --cluster-to "$to" \
        --cluster-slots "$SLOTS" --cluster-yes >"$DIR/reshard.log" 2>&1 &
    RESHARD=$!
}

# Wait for the reshard; prints "seconds overlapped-fully|ended-after-run".
reshard_wait() {
    local state=done-during-run
    kill -0 "$RESHARD" 2>/dev/null && state=still-running-at-end
    wait "$RESHARD" || { echo "reshard failed:" >&2; tail -5 "$DIR/reshard.log" >&2; }
    echo "$(echo "$(date +%s.%N) - $T0" | bc | cut -c1-4)s $state"
}

echo "| workload | phase | rps | p99 ms | error replies | reshard |"
echo "|---|---|---:|---:|---:|---|"
for test in set get; do
    read -r rps p99 errors <<<"$(bench $test)"
    echo "| $test P$PIPELINE | steady | $rps | $p99 | $errors | - |"
    if [[ $test == set ]]; then reshard_start "$BASE" $((BASE + 1)); else reshard_start $((BASE + 1)) "$BASE"; fi
    read -r rps p99 errors <<<"$(bench $test)"
    echo "| $test P$PIPELINE | during reshard of $SLOTS slots | $rps | $p99 | $errors | $(reshard_wait) |"
done
redis-cli -p $PROXY_PORT info stats | grep -E "redirects|retries|failed|refreshes" | tr -d '\r'
