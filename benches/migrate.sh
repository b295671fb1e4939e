#!/usr/bin/env bash
# migrate.sh — slots moving between pools under load: the clients' throughput and p99
# before, during and after a move, and the moving rate (keys/s, MB/s).
# MODE=to-cluster: every key moving from Twemproxy's placement onto a Redis Cluster instead
# (docs/FROM-TWEMPROXY.md): 3 standalone servers whose KEYS keys are written through a real
# nutcracker (ketama, fnv1a_64), slotgate in pool mode on the same placement, a 3-master
# Redis Cluster (no replicas) as the destination, `slotgate migrate start --to-cluster`; the
# "after" slices run on the same slotgate address in plain cluster mode. At the end the
# pools' DBSIZE must be 0 and the cluster's KEYS.
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
#   env (defaults): MODE=pools (or to-cluster) KEYS=200000 VALUE=100 CLIENTS=50 PIPELINE=1 WORKERS=1
#                   THROTTLES="5000 0" SLICE_SECS=1 DURING_SLICE_SECS=0.25
#                   BEFORE_SECS=5 AFTER_SECS=5
#                   MAX_MOVE_SECS=300 SLOTGATE_BIN (default: $CARGO_TARGET_DIR or target,
#                   release/slotgate; built when missing)  OUT (default: a temp dir, removed)
# Every process is started on 127.0.0.1 and stopped by its PID when the script ends, fails
# or is interrupted. Needs redis-server, redis-cli, redis-benchmark, python3 (standard
# library only), cargo; MODE=to-cluster also /usr/sbin/nutcracker.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODE=${MODE:-pools}
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

# Free loopback ports for cluster nodes, $1 of them: each below 55536 with its bus port
# (+10000) free too.
free_node_ports() {
    python3 - "$1" <<'EOF'
import random, socket, sys
ports, socks = [], []
while len(ports) < int(sys.argv[1]):
    port = random.randint(20000, 55000)
    pair = [socket.socket(), socket.socket()]
    try:
        pair[0].bind(("127.0.0.1", port))
        pair[1].bind(("127.0.0.1", port + 10000))
    except OSError:
        continue
    socks += pair
    ports.append(port)
print(" ".join(map(str, ports)))
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

# The SET commands of the KEYS keys (redis-benchmark's names), in RESP, on stdout.
key_commands() {
    awk -v n="$KEYS" -v size="$VALUE" 'BEGIN {
        v = sprintf("%*s", size, ""); gsub(/ /, "x", v)
        for (i = 0; i < n; i++) {
            k = sprintf("key:%012d", i)
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, size, v
        }
    }'
}

# Start a standalone redis-server on each port given (extra redis-server args after `--`).
start_servers() {
    local extra=() ports=()
    while (($#)); do
        if [[ $1 == -- ]]; then shift; extra=("$@"); break; fi
        ports+=("$1"); shift
    done
    for port in "${ports[@]}"; do
        mkdir -p "$DIR/$port"
        (cd "$DIR/$port" && exec redis-server --port "$port" --bind 127.0.0.1 --dir "$DIR/$port" \
            --save '' --appendonly no --daemonize no "${extra[@]}" >"$DIR/$port/log" 2>&1) &
        PIDS+=($!)
    done
    for port in "${ports[@]}"; do await_ping "$port"; done
}

# MODE=pools: 4 servers, pools a-c own the slots, d is new; the keys through slotgate.
setup_pools() {
    local throttle=$1 servers=("${@:2}")
    start_servers "${servers[@]}"
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
    key_commands | timeout 300 redis-cli -p "$PROXY" --pipe >"$DIR/fill.log"
    START=(start --slots "$MOVING" --to d)
    DEST=("${servers[3]}")
    POOLS=("${servers[@]:0:3}")
    WHAT="Move of slots $MOVING (pool a -> d)"
}

# MODE=to-cluster: 3 servers written through nutcracker (ketama, fnv1a_64), slotgate in pool
# mode on the same placement, a 3-master cluster (ports of its own: bus port = port + 10000)
# as the destination.
setup_to_cluster() {
    local throttle=$1 servers=("${@:2:3}") nodes twem=$5 node
    read -r -a nodes <<<"$(free_node_ports 3)"
    start_servers "${servers[@]}"
    start_servers "${nodes[@]}" -- --cluster-enabled yes --cluster-config-file nodes.conf
    local seeds=()
    for node in "${nodes[@]}"; do seeds+=("127.0.0.1:$node"); done
    redis-cli --cluster create "${seeds[@]}" --cluster-yes >"$DIR/cluster-create.log" 2>&1
    for _ in $(seq 100); do
        redis-cli -p "${nodes[0]}" cluster info | grep -q 'cluster_state:ok' && break
        sleep 0.1
    done
    {
        echo "app:"
        echo "  listen: 127.0.0.1:$twem"
        echo "  hash: fnv1a_64"
        echo "  distribution: ketama"
        echo "  redis: true"
        echo "  auto_eject_hosts: false"
        echo "  timeout: 5000"
        echo "  servers:"
        for port in "${servers[@]}"; do echo "   - 127.0.0.1:$port:1"; done
    } >"$DIR/nutcracker.yml"
    /usr/sbin/nutcracker -c "$DIR/nutcracker.yml" -o "$DIR/nutcracker.log" \
        -p "$DIR/nutcracker.pid" -s "$(free_ports 1)" -a 127.0.0.1 &
    local nutcracker=$!
    PIDS+=("$nutcracker")
    for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$twem") 2>/dev/null && break; sleep 0.1; done
    # The keys, through nutcracker (raw RESP: redis-cli --pipe ends with an ECHO, which
    # nutcracker does not serve).
    key_commands | python3 -c '
import socket, sys
cmds = sys.stdin.buffer.read().split(b"*3\r\n$3\r\nSET\r\n")[1:]
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buf = b""
for i in range(0, len(cmds), 1000):
    chunk = cmds[i:i + 1000]
    s.sendall(b"".join(b"*3\r\n$3\r\nSET\r\n" + c for c in chunk))
    want = 5 * len(chunk)
    while len(buf) < want:
        buf += s.recv(65536)
    assert buf[:want] == b"+OK\r\n" * len(chunk), buf[:200]
    buf = buf[want:]
' "$twem"
    kill "$nutcracker"
    cat >"$DIR/slotgate.toml" <<EOF
[proxy]
listen = "127.0.0.1:$PROXY"
workers = $WORKERS

[admin]
listen = "127.0.0.1:$ADMIN"

[placement]
distribution = "ketama"
hash = "fnv1a_64"

[pools.a]
master = "127.0.0.1:${servers[0]}"
[pools.b]
master = "127.0.0.1:${servers[1]}"
[pools.c]
master = "127.0.0.1:${servers[2]}"

[migration]
keys_per_second = $throttle
EOF
    "$BIN" --config "$DIR/slotgate.toml" --log-level warn >"$OUT/proxy-$throttle.log" 2>&1 &
    PIDS+=($!)
    await_ping "$PROXY"
    START=(start --to-cluster "$(IFS=,; echo "${seeds[*]}")")
    DEST=("${nodes[@]}")
    POOLS=("${servers[@]}")
    WHAT="Move of every key (3 ketama pools -> 3-master cluster)"
}

# The sum of the DBSIZEs of the servers on the ports given.
dbsizes() {
    local port total=0
    for port in "$@"; do total=$((total + $(redis-cli -p "$port" dbsize))); done
    echo "$total"
}

# One round at migration.keys_per_second = $1.
round() {
    local throttle=$1 ports t0 t_end moved_state
    read -r -a ports <<<"$(free_ports 10)"
    PROXY=${ports[0]}
    ADMIN=${ports[1]}
    ROWS=$OUT/rows-$throttle.txt
    : >"$ROWS"
    if [[ $MODE == to-cluster ]]; then
        setup_to_cluster "$throttle" "${ports[@]:2:4}"
    else
        setup_pools "$throttle" "${ports[@]:2:4}"
    fi
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
    "$BIN" migrate --admin "127.0.0.1:$ADMIN" "${START[@]}" >/dev/null
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
    local on_d total left
    on_d=$(dbsizes "${DEST[@]}")
    total=$(redis-cli -p "$PROXY" dbsize)
    left=$(dbsizes "${POOLS[@]}")
    python3 - "$OUT/status-$throttle.json" "$ROWS" "$throttle" "$t0" "$t_end" "$moved_state" \
        "$on_d" "$total" "$KEYS" "$WHAT" "$MODE" "$left" >>"$OUT/report.md" <<'EOF'
import json, statistics, sys
status_file, rows_file, throttle, t0, t_end, state, on_d, total, keys, what, mode, left = sys.argv[1:]
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
print(f"\n{what}: {state}, {secs:.2f} s. Background mover: "
      f"{moved:,} keys, {moved_bytes / 1e6:.1f} MB (MEMORY USAGE) = {moved / secs:,.0f} keys/s, "
      f"{moved_bytes / 1e6 / secs:.2f} MB/s; {status['on_touch_moves']:,} requests moved their "
      f"keys on touch; the whole range ({int(on_d):,} keys on the destination after) moved at "
      f"{int(on_d) / secs:,.0f} keys/s. Failures: {status['on_touch_failures']} on touch, "
      f"{status['background_failures']} background. After: DBSIZE {total} "
      f"({'=' if total == keys else '!='} {keys})"
      + (f"; keys left on the pools: {left}." if mode == "to-cluster" else "."))
EOF
    cleanup
}

{
    echo "### benches/migrate.sh MODE=$MODE, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo
    echo "KEYS=$KEYS VALUE=$VALUE CLIENTS=$CLIENTS PIPELINE=$PIPELINE WORKERS=$WORKERS" \
        "SLICE_SECS=$SLICE_SECS, $(nproc) CPUs, $(redis-server --version | cut -d' ' -f3)"
} >"$OUT/report.md"
for throttle in $THROTTLES; do round "$throttle"; done
cat "$OUT/report.md"
