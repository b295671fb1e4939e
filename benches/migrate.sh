#!/usr/bin/env bash
# migrate.sh — slots moving between pools under load: the clients' throughput and p99
# before, during and after a move, and the moving rate (keys/s, MB/s).
#
# For each throttle in THROTTLES (migration.keys_per_second; default "5000 0": the default
# pace, then unthrottled), on fresh processes:
#   4 standalone redis-servers on free loopback ports, no persistence: pools a, b, c own the
#     16384 slots (three even ranges), pool d is new and owns none;
#   slotgate (release build, pool mode, --config FILE, admin listener, WORKERS workers);
#   KEYS keys `key:%012d` (redis-benchmark's key names) of VALUE bytes written through
#     slotgate (redis-cli --pipe);
#   redis-benchmark (CLIENTS clients, PIPELINE, SET then GET of the same KEYS random keys) in
#     back-to-back slices of about SLICE_SECS seconds: BEFORE_SECS of slices; then
#     `slotgate migrate start --slots 0-2730 --to d` (half of pool a's slots: a sixth of the
#     keys) and slices of about DURING_SLICE_SECS until the move is done (at most
#     MAX_MOVE_SECS; the slice the move ends in counts as "during"); then AFTER_SECS of
#     slices. The load touches the moving keys too, so many move on touch, before the mover
#     reaches them.
# Reported per throttle and phase: requests/s (all the phase's requests over its time), the
# median and the worst slice p99 (ms), error replies; the move's duration (start command to
# the status showing no move, polled every 0.2 s), keys and bytes moved by the background
# mover (bytes = the source's MEMORY USAGE of each key, see docs/GROWING-POOLS.md) and its
# rate over the move, the requests whose keys moved on touch, every key of the range (pool
# d's DBSIZE after) over the move's time, and a check at the end: DBSIZE through slotgate is
# still KEYS.
#
# Usage: benches/migrate.sh
#   env (defaults): KEYS=200000 VALUE=100 CLIENTS=50 PIPELINE=1 WORKERS=1
#                   THROTTLES="5000 0" SLICE_SECS=1 DURING_SLICE_SECS=0.25
#                   BEFORE_SECS=5 AFTER_SECS=5
#                   MAX_MOVE_SECS=300 SLOTGATE_BIN (default: $CARGO_TARGET_DIR or target,
#                   release/slotgate; built when missing)  OUT (default: a temp dir, removed)
# Every process is started on 127.0.0.1 and stopped by its PID when the script ends, fails
# or is interrupted. Needs redis-server, redis-cli, redis-benchmark, python3 (standard
# library only), cargo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

KEYS=${KEYS:-200000}
VALUE=${VALUE:-100}
CLIENTS=${CLIENTS:-50}
PIPELINE=${PIPELINE:-1}
WORKERS=${WORKERS:-1}
THROTTLES=${THROTTLES:-"5000 0"}
SLICE_SECS=${SLICE_SECS:-1}
DURING_SLICE_SECS=${DURING_SLICE_SECS:-0.25}
BEFORE_SECS=${BEFORE_SECS:-5}
AFTER_SECS=${AFTER_SECS:-5}
MAX_MOVE_SECS=${MAX_MOVE_SECS:-300}
BIN=${SLOTGATE_BIN:-${CARGO_TARGET_DIR:-target}/release/slotgate}
MOVING=0-2730
DIR=$(mktemp -d /tmp/slotgate-migrate.XXXXXX)
OUT=${OUT:-$DIR}
mkdir -p "$OUT"
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
trap 'cleanup; rm -rf "$DIR"' EXIT
trap 'exit 130' INT TERM

[[ -x $BIN ]] || cargo build --release
now() { date +%s.%N; }

# Free loopback ports, $1 of them.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Wait (at most 10 s) until the server on port $1 answers PING.
await_ping() {
    for _ in $(seq 100); do
        redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "nothing answers on port $1" >&2
    return 1
}

# The proxy's move status (JSON), via `slotgate migrate status`.
status() { "$BIN" migrate --admin "127.0.0.1:$ADMIN" status; }

# Number of moves in force (from the status JSON on stdin).
moves() { python3 -c 'import json,sys; print(len(json.load(sys.stdin)["moves"]))'; }

# One slice of load: SET then GET, $2 requests each; appends "phase test n rps p99 errors"
# rows to $ROWS.
slice() {
    local phase=$1 n=$2 out errors
    out=$(timeout 60 redis-benchmark -p "$PROXY" -t set,get -n "$n" -r "$KEYS" \
        -d "$VALUE" -c "$CLIENTS" -P "$PIPELINE" --csv 2>"$DIR/bench.err") || true
    errors=$(grep -ci "err" "$DIR/bench.err" || true)
    echo "$out" | awk -F'","' -v phase="$phase" -v n="$n" -v errors="$errors" 'NR > 1 {
        gsub(/"/, "", $1); gsub(/"/, "", $2); gsub(/"/, "", $7)
        printf "%s %s %s %s %s %s\n", phase, $1, n, $2, $7, errors }' >>"$ROWS"
}

# Slices of `phase` for about $2 seconds.
slices_for() {
    local end
    end=$(echo "$(now) + $2" | bc)
    while (($(echo "$(now) < $end" | bc))); do slice "$1" "$SLICE_N"; done
}

# One round at migration.keys_per_second = $1.
round() {
    local throttle=$1 ports t0 t_end moved_state
    read -r -a ports <<<"$(free_ports 6)"
    local servers=("${ports[@]:0:4}")
    PROXY=${ports[4]}
    ADMIN=${ports[5]}
    ROWS=$OUT/rows-$throttle.txt
    : >"$ROWS"
    for port in "${servers[@]}"; do
        mkdir -p "$DIR/$port"
        redis-server --port "$port" --bind 127.0.0.1 --dir "$DIR/$port" --save '' \
            --appendonly no --daemonize no >"$DIR/$port/log" 2>&1 &
        PIDS+=($!)
    done
    for port in "${servers[@]}"; do await_ping "$port"; done
    cat >"$DIR/slotgate.toml" <<EOF
[proxy]
listen = "127.0.0.1:$PROXY"
workers = $WORKERS

[admin]
listen = "127.0.0.1:$ADMIN"

[pools.a]
master = "127.0.0.1:${servers[0]}"
[pools.b]
master = "127.0.0.1:${servers[1]}"
[pools.c]
master = "127.0.0.1:${servers[2]}"
[pools.d]
master = "127.0.0.1:${servers[3]}"

[slots]
"0-5460" = "a"
"5461-10922" = "b"
"10923-16383" = "c"

[migration]
keys_per_second = $throttle
EOF
    "$BIN" --config "$DIR/slotgate.toml" --log-level warn >"$OUT/proxy-$throttle.log" 2>&1 &
    PIDS+=($!)
    await_ping "$PROXY"

    # The keys, through slotgate.
    awk -v n="$KEYS" -v size="$VALUE" 'BEGIN {
        v = sprintf("%*s", size, ""); gsub(/ /, "x", v)
        for (i = 0; i < n; i++) {
            k = sprintf("key:%012d", i)
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, size, v
        }
    }' | timeout 300 redis-cli -p "$PROXY" --pipe >"$DIR/fill.log"
    local filled
    filled=$(redis-cli -p "$PROXY" dbsize)
    [[ $filled == "$KEYS" ]] || { echo "filled $filled keys, not $KEYS" >&2; return 1; }

    # Slices of about SLICE_SECS: half the requests SET, half GET, at the rate of a short run.
    local rps
    rps=$(timeout 60 redis-benchmark -p "$PROXY" -t get -n 20000 -r "$KEYS" -c "$CLIENTS" \
        -P "$PIPELINE" --csv | awk -F'","' 'NR == 2 { gsub(/"/, "", $2); print int($2) }')
    SLICE_N=$(echo "n = $rps * $SLICE_SECS / 2; if (n < 1000) n = 1000; n / 1" | bc)
    local during_n
    during_n=$(echo "n = $rps * $DURING_SLICE_SECS / 2; if (n < 500) n = 500; n / 1" | bc)

    slices_for before "$BEFORE_SECS"

    rm -f "$DIR/done"
    t0=$(now)
    "$BIN" migrate --admin "127.0.0.1:$ADMIN" start --slots "$MOVING" --to d >/dev/null
    # Polls the status every 0.2 s; writes the time the move was gone from it.
    (
        while [[ $(status | moves) != 0 ]]; do sleep 0.2; done
        now >"$DIR/done"
    ) &
    local poller=$!
    PIDS+=("$poller")
    while [[ ! -s $DIR/done ]] && (($(echo "$(now) - $t0 < $MAX_MOVE_SECS" | bc))); do
        slice during "$during_n"
    done
    if [[ -s $DIR/done ]]; then
        t_end=$(cat "$DIR/done")
        moved_state=done
    else
        t_end=$(now)
        moved_state="NOT done within ${MAX_MOVE_SECS}s"
    fi
    slices_for after "$AFTER_SECS"

    status >"$OUT/status-$throttle.json"
    local on_d total
    on_d=$(redis-cli -p "${servers[3]}" dbsize)
    total=$(redis-cli -p "$PROXY" dbsize)
    python3 - "$OUT/status-$throttle.json" "$ROWS" "$throttle" "$t0" "$t_end" "$moved_state" \
        "$on_d" "$total" "$KEYS" >>"$OUT/report.md" <<'EOF'
import json, statistics, sys
status_file, rows_file, throttle, t0, t_end, state, on_d, total, keys = sys.argv[1:]
status = json.load(open(status_file))
secs = float(t_end) - float(t0)
rows = [line.split() for line in open(rows_file) if line.strip()]
name = "unthrottled" if throttle == "0" else f"{int(throttle):,} keys/s"
print(f"\n#### keys_per_second = {throttle} ({name})\n")
print("| phase | test | slices | requests/s | p99 ms (median slice) | p99 ms (worst slice) | error replies |")
print("|---|---|---:|---:|---:|---:|---:|")
for phase in ("before", "during", "after"):
    for test in ("SET", "GET"):
        these = [r for r in rows if r[0] == phase and r[1] == test]
        if not these:
            print(f"| {phase} | {test} | 0 | - | - | - | - |")
            continue
        n = sum(int(r[2]) for r in these)
        time = sum(int(r[2]) / float(r[3]) for r in these)
        p99 = [float(r[4]) for r in these]
        errors = sum(int(r[5]) for r in these)
        print(f"| {phase} | {test} | {len(these)} | {n / time:,.0f} | "
              f"{statistics.median(p99):.3f} | {max(p99):.3f} | {errors} |")
moved = status["background_keys_moved"]
moved_bytes = status["background_bytes_moved"]
print(f"\nMove of slots 0-2730 (pool a -> d): {state}, {secs:.2f} s. Background mover: "
      f"{moved:,} keys, {moved_bytes / 1e6:.1f} MB (MEMORY USAGE) = {moved / secs:,.0f} keys/s, "
      f"{moved_bytes / 1e6 / secs:.2f} MB/s; {status['on_touch_moves']:,} requests moved their "
      f"keys on touch; the whole range ({int(on_d):,} keys on pool d after) moved at "
      f"{int(on_d) / secs:,.0f} keys/s. Failures: {status['on_touch_failures']} on touch, "
      f"{status['background_failures']} background. After: DBSIZE {total} "
      f"({'=' if total == keys else '!='} {keys}).")
EOF
    cleanup
}

{
    echo "### benches/migrate.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo
    echo "KEYS=$KEYS VALUE=$VALUE CLIENTS=$CLIENTS PIPELINE=$PIPELINE WORKERS=$WORKERS" \
        "SLICE_SECS=$SLICE_SECS, $(nproc) CPUs, $(redis-server --version | cut -d' ' -f3)"
} >"$OUT/report.md"
for throttle in $THROTTLES; do round "$throttle"; done
cat "$OUT/report.md"
