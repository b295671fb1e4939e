#!/usr/bin/env bash
# profile.sh — where slotgate spends its instructions, under a fixed GET/SET load.
#
# Usage: bash benches/profile.sh          (from anywhere; ~3 min + the first debug build)
#
# Builds slotgate with full debug info into a separate target dir (the shipped release
# binary in target/release is left alone), starts a throwaway 3-master Redis Cluster on free
# loopback ports and slotgate (cluster mode, --workers 1) under
#   callgrind (valgrind --tool=callgrind): instruction counts, repeatable on a noisy machine
#   or perf record, with TOOL=perf (needs hardware counters: `perf stat -e instructions true`
#   must print a count; TOOL=auto picks perf when it does)
#   or, with TOOL=kernel, at full speed with perf's cpu-clock sampling (no hardware counters
#   needed): where the proxy's CPU time goes between user space and the kernel, and inside
#   the kernel by system call (sendto, recvfrom, epoll_wait) and the loopback receive path
#   (softirq) the sender runs on the receiver's behalf
# then, for each workload (SET and GET, pipeline 1 and 16), drives exactly N requests with
# redis-benchmark (CLIENTS clients, 32-byte values, KEYSPACE random keys) and prints
#   - instructions per request (all slotgate threads, whole run / N), and
#   - the top TOP functions by self cost and by inclusive cost;
# with TOOL=kernel instead: CPU µs per request (user, system: /proc/PID/stat), system calls
# (sendto, recvfrom, epoll_wait) and context switches per request (perf stat on the syscall
# tracepoints), and the share of the sampled time in user space and in each kernel path.
# Everything it starts is stopped by PID on exit. Files: OUT/ (callgrind.out.*, *.txt).
#
# Environment: N [20000; 300000 with TOOL=kernel]  CLIENTS [50]  KEYSPACE [100000]  TOP [25]
#   WORKLOADS ["set get"] (also mset, and mget: MGET of 10 random keys)  PIPELINES ["1 16"]
#   TOOL [auto|callgrind|perf|kernel]
#   SLOWLOG [on]: the slow log's bookkeeping as shipped, with a threshold nothing reaches
#   (100 s); off: slow log off
#   SUBJECT [slotgate]: what is profiled; relay-epoll or relay-work: benches/relay_floor.rs
#   over the same cluster (forwarding only; with slotgate's per-request work), built as an
#   example into PROFILE_TARGET_DIR, to compare slotgate's instructions with the same work
#   on an event loop of its own
#   SERVER_CPUS [1]  CLIENT_CPUS [0]: taskset pinning as in benches/e2e.sh (the servers and
#   slotgate on one CPU, redis-benchmark on the other; "" = no pinning)
#   PROFILE_TARGET_DIR [target/profiling]  OUT [target/profile/DATE]
# Needs: redis-server redis-tools (Debian), valgrind (Debian: valgrind) or perf, cargo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
E2E=$PWD/benches/e2e

N=${N:-}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
TOP=${TOP:-25}
WORKLOADS=${WORKLOADS:-"set get"}
PIPELINES=${PIPELINES:-"1 16"}
TOOL=${TOOL:-auto}
# Enough for a few seconds per workload at full speed (kernel), or under callgrind.
[[ -z $N ]] && { [[ $TOOL == kernel ]] && N=300000 || N=20000; }
SERVER_CPUS=${SERVER_CPUS-1}
CLIENT_CPUS=${CLIENT_CPUS-0}
PROFILE_TARGET_DIR=${PROFILE_TARGET_DIR:-target/profiling}
SUBJECT=${SUBJECT:-slotgate}
OUT=${OUT:-target/profile/$(date +%Y%m%d-%H%M%S)}

die() { echo "profile.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

case $SUBJECT in slotgate | relay-epoll | relay-work) ;; *) die "SUBJECT must be slotgate, relay-epoll or relay-work" ;; esac

for b in redis-server redis-cli redis-benchmark; do
    command -v $b >/dev/null || die "missing $b (Debian/Ubuntu: sudo apt-get install -y redis-server redis-tools)"
done
if [[ $TOOL == auto ]]; then
    if command -v perf >/dev/null && perf stat -x, -e instructions true 2>&1 >/dev/null | grep -q '^[0-9]'; then
        TOOL=perf
    else
        TOOL=callgrind
    fi
fi
case $TOOL in
    callgrind) command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null \
                   || die "missing valgrind (Debian/Ubuntu: sudo apt-get install -y valgrind)" ;;
    perf | kernel) command -v perf >/dev/null || die "missing perf (Debian: linux-perf)" ;;
    *) die "TOOL must be auto, callgrind, perf or kernel" ;;
esac
log "tool: $TOOL; $(wc -w <<<"$WORKLOADS") workloads x $(wc -w <<<"$PIPELINES") pipelines x $N requests; expected about 3 min, plus the first build (~10 min on 2 busy cores)"

log "building with debug info into $PROFILE_TARGET_DIR (target/release is not touched)"
if [[ $SUBJECT == slotgate ]]; then
    CARGO_PROFILE_RELEASE_DEBUG=true cargo build --release --quiet --bin slotgate \
        --target-dir "$PROFILE_TARGET_DIR" || die "build failed"
    BIN=$PROFILE_TARGET_DIR/release/slotgate
else
    CARGO_PROFILE_RELEASE_DEBUG=true cargo build --release --quiet --example relay_floor \
        --target-dir "$PROFILE_TARGET_DIR" || die "build failed"
    BIN=$PROFILE_TARGET_DIR/release/examples/relay_floor
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# Command prefixes (taskset or nothing): a prefix, not a function, so `$!` of a background
# start is the process itself (taskset execs it), which cleanup stops by PID.
PIN_SERVER=()
PIN_CLIENT=()
[[ -n $SERVER_CPUS ]] && PIN_SERVER=(taskset -c "$SERVER_CPUS")
[[ -n $CLIENT_CPUS ]] && PIN_CLIENT=(taskset -c "$CLIENT_CPUS")
PIDS=()
alive() { [[ -r /proc/$1/stat && $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }
cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for i in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && { kill -9 "$pid" 2>/dev/null || true; }
        wait "$pid" 2>/dev/null || true
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_ping() { # port pid seconds
    local i
    for i in $(seq 1 $(($3 * 10))); do
        [[ $(timeout 2 redis-cli -p "$1" ping 2>/dev/null) == PONG ]] && return 0
        alive "$2" || break
        sleep 0.1
    done
    die "nothing answers PING on port $1 (logs in $OUT)"
}

# shellcheck disable=SC2207
P=($(python3 "$E2E/ports.py" 7))
for i in 0 1 2; do
    # A reused OUT must not hand the new node an old cluster's nodes.conf.
    rm -rf "$OUT/c$i"
    mkdir -p "$OUT/c$i"
    "${PIN_SERVER[@]}" redis-server --port "${P[$i]}" --bind 127.0.0.1 --protected-mode no --save "" \
        --appendonly no --dir "$OUT/c$i" --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-port "${P[$((i + 3))]}" --logfile "$OUT/c$i/redis.log" < /dev/null &
    PIDS+=($!)
done
for i in 0 1 2; do wait_ping "${P[$i]}" "${PIDS[$i]}" 15; done
timeout 60 redis-cli --cluster create "127.0.0.1:${P[0]}" "127.0.0.1:${P[1]}" "127.0.0.1:${P[2]}" \
    --cluster-yes > "$OUT/cluster-create.log" 2>&1 || die "cluster create failed"
for i in $(seq 1 150); do
    ok=1
    for p in "${P[@]:0:3}"; do
        timeout 2 redis-cli -p "$p" cluster info | grep -q '^cluster_state:ok' || ok=0
    done
    ((ok)) && break
    sleep 0.2
done
((ok)) || die "cluster did not reach cluster_state:ok"
PORT=${P[6]}
ARGS=(--listen "127.0.0.1:$PORT" --cluster "127.0.0.1:${P[0]}" --workers 1 --log-level warn)
if [[ $SUBJECT != slotgate ]]; then
    # The relay's routes: each master's slot ranges, as benches/e2e.sh gives them.
    # shellcheck disable=SC2207
    ARGS=(--io epoll --work "$([[ $SUBJECT == relay-work ]] && echo slotgate || echo forward)"
        --listen "127.0.0.1:$PORT" $(redis-cli -p "${P[0]}" cluster nodes | awk '$3 ~ /master/ {
            split($2, a, "@"); for (i = 9; i <= NF; i++) if ($i ~ /^[0-9]+(-[0-9]+)?$/) {
                r = $i; if (r !~ /-/) r = r "-" r; print "--route", r "=" a[1] } }'))
fi

# Under callgrind every request takes longer than the slow log's default 10 ms, and logging
# each one (parse, format, lock) would dominate the profile. So the threshold is 100 s: the
# slow log's per-request bookkeeping runs, as shipped, but nothing is logged. SLOWLOG=off
# turns it off (the setting of the figures in docs/BENCHMARKS.md before 2026-12-06 03:50).
if [[ ${SLOWLOG:-on} == off ]]; then
    export SLOTGATE_SLOWLOG__LOG_SLOWER_THAN_US=-1
else
    export SLOTGATE_SLOWLOG__LOG_SLOWER_THAN_US=100000000
fi
if [[ $TOOL == callgrind ]]; then
    "${PIN_SERVER[@]}" valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" --dump-instr=no \
        "$BIN" "${ARGS[@]}" > "$OUT/slotgate.log" 2>&1 < /dev/null &
else
    "${PIN_SERVER[@]}" "$BIN" "${ARGS[@]}" > "$OUT/slotgate.log" 2>&1 < /dev/null &
fi
SG=$!
PIDS+=("$SG")
wait_ping "$PORT" "$SG" 120
log "$SUBJECT pid $SG on 127.0.0.1:$PORT"

bench() { # workload pipeline n
    # A redis-benchmark test (-t), or for mget (not one) MGET of 10 pre-filled random keys.
    local what=(-t "$1")
    [[ $1 == mget ]] && what=(MGET key:__rand_int__ key:__rand_int__ key:__rand_int__ key:__rand_int__
        key:__rand_int__ key:__rand_int__ key:__rand_int__ key:__rand_int__ key:__rand_int__ key:__rand_int__)
    "${PIN_CLIENT[@]}" redis-benchmark -p "$PORT" -c "$CLIENTS" -n "$3" -r "$KEYSPACE" -d 32 -P "$2" --csv "${what[@]}" \
        > "$OUT/bench-$1-P$2.csv" 2> "$OUT/bench-$1-P$2.err" || die "redis-benchmark $1 P$2 failed"
}
log "warm-up and pre-fill ($KEYSPACE keys)"
redis-benchmark -p "$PORT" -c "$CLIENTS" -n "$KEYSPACE" -r "$KEYSPACE" -d 32 -P 16 -t set -q > /dev/null 2>&1

fold() { # long generic Rust names: keep each line readable
    cut -c1-200
}

cpu_ticks() { # utime stime of slotgate (all threads), in clock ticks
    awk '{sub(/.*\) /, ""); print $12, $13}' "/proc/$SG/stat"
}

# TOOL=kernel: the share of the samples under each kernel path (inclusive), and user space.
kernel_split() { # perf.data
    local data=$1
    perf report -i "$data" --stdio --children --sort sym -g none 2>/dev/null \
        | awk '
            $3 == "[k]" { share[$4] = $1 + 0 }
            $3 == "[.]" { user += $2 + 0 }
            END {
                printf "user space %.1f %%", user
                n = split("__sys_sendto __sys_recvfrom do_epoll_wait net_rx_action sock_def_readable __schedule", k, " ")
                split("sendto recvfrom epoll_wait loopback-receive(softirq) waking-the-reader scheduling", name, " ")
                for (i = 1; i <= n; i++) printf ", %s %.1f %%", name[i], share[k[i]]
                printf "\n"
            }'
}

# TOOL=kernel: system calls per request, counted by perf stat on the syscall tracepoints.
SYSCALL_EVENTS=syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,context-switches
syscalls_per_request() { # perf stat -x, output -> "sendto | recvfrom | epoll_wait | context switches"
    awk -F, -v n="$N" '
        $3 ~ /sendto$/ { c[1] = $1 }
        $3 ~ /recvfrom$/ { c[2] = $1 }
        $3 ~ /epoll_wait$/ { c[3] = $1 }
        $3 == "context-switches" { c[4] = $1 }
        END {
            for (i = 1; i <= 4; i++)
                printf "%s%s", (i > 1 ? " | " : ""), (c[i] ~ /^[0-9]+$/ ? sprintf("%.3f", c[i] / n) : "?")
            printf "\n"
        }' "$1"
}

SUMMARY=()
for w in $WORKLOADS; do
    for p in $PIPELINES; do
        label=$w-P$p
        if [[ $TOOL == callgrind ]]; then
            callgrind_control --zero "$SG" > /dev/null 2>&1
            bench "$w" "$p" "$N"
            callgrind_control --dump="$label" "$SG" > /dev/null 2>&1
            sleep 0.5
            f=$(ls -t "$OUT"/callgrind.out.[0-9]* 2>/dev/null | head -1)
            [[ -n $f ]] || die "no callgrind dump after $label"
            # A dump taken while threads run records their unfinished calls (the thread's
            # outer frames: clone, start_thread, the runtime loop ...) as "calls=0"; the
            # callgrind_annotate of valgrind 3.19 then counts those calls' whole cost as the
            # caller's self cost (clone at 100 %). Count them as one call: costs stay exact.
            sed 's/^calls=0 /calls=1 /' "$f" > "$OUT/callgrind.out.$label"
            rm -f "$f"
            f=$OUT/callgrind.out.$label
            ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
            callgrind_annotate --threshold=99 "$f" 2>/dev/null > "$OUT/self-$label.txt" || true
            callgrind_annotate --threshold=99 --inclusive=yes "$f" 2>/dev/null > "$OUT/inclusive-$label.txt" || true
        elif [[ $TOOL == kernel ]]; then
            read -r u0 s0 <<<"$(cpu_ticks)"
            perf record -q -e cpu-clock -F 999 -g -p "$SG" -o "$OUT/perf-$label.data" > /dev/null 2>&1 &
            pr=$!
            # System calls and context switches counted (tracepoints: needs tracefs).
            perf stat -x, -e "$SYSCALL_EVENTS" -p "$SG" -o "$OUT/syscalls-$label.txt" > /dev/null 2>&1 &
            ps=$!
            sleep 0.5
            bench "$w" "$p" "$N"
            kill -INT "$pr" "$ps" 2>/dev/null || true
            wait "$pr" "$ps" 2>/dev/null || true
            calls=$(syscalls_per_request "$OUT/syscalls-$label.txt")
            read -r u1 s1 <<<"$(cpu_ticks)"
            tck=$(getconf CLK_TCK)
            usr=$(awk -v a="$u0" -v b="$u1" -v t="$tck" -v n="$N" 'BEGIN{printf "%.2f", (b - a) / t / n * 1e6}')
            sys=$(awk -v a="$s0" -v b="$s1" -v t="$tck" -v n="$N" 'BEGIN{printf "%.2f", (b - a) / t / n * 1e6}')
            split=$(kernel_split "$OUT/perf-$label.data")
            echo "$split" > "$OUT/split-$label.txt"
            perf report -i "$OUT/perf-$label.data" --stdio --no-children --sort sym -g none \
                --percent-limit 0.5 2>/dev/null | grep -v '^$' > "$OUT/self-$label.txt" || true
        else
            perf stat -x, -e instructions -p "$SG" -o "$OUT/stat-$label.txt" &
            ps=$!
            perf record -q -g -p "$SG" -o "$OUT/perf-$label.data" > /dev/null 2>&1 &
            pr=$!
            sleep 0.5
            bench "$w" "$p" "$N"
            kill -INT "$ps" "$pr" 2>/dev/null || true
            wait "$ps" "$pr" 2>/dev/null || true
            ir=$(awk -F, '/instructions/ {print $1; exit}' "$OUT/stat-$label.txt")
            perf report -i "$OUT/perf-$label.data" --stdio --no-children --percent-limit 0.5 \
                2>/dev/null | grep -v '^$' > "$OUT/self-$label.txt" || true
            perf report -i "$OUT/perf-$label.data" --stdio --children --percent-limit 0.5 \
                2>/dev/null | grep -v '^$' > "$OUT/inclusive-$label.txt" || true
        fi
        rps=$(awk -F'","' 'NR == 2 {print $2}' "$OUT/bench-$label.csv")
        if [[ $TOOL == kernel ]]; then
            SUMMARY+=("| $w | $p | $N | ${rps:-?} | $usr | $sys | $calls | $split |")
            echo
            echo "=== $label: $N requests at ${rps:-?} rps; $SUBJECT CPU per request: user $usr µs, system $sys µs"
            echo "--- per request: sendto | recvfrom | epoll_wait | context switches = $calls"
            echo "--- sampled time: $split"
            echo "--- top $TOP by self cost ($OUT/self-$label.txt)"
            grep -E '^ +[0-9.]+%' "$OUT/self-$label.txt" | head -n "$TOP" | fold
            continue
        fi
        per=$(awk -v i="${ir:-0}" -v n="$N" 'BEGIN{printf "%.0f", i / n}')
        SUMMARY+=("| $w | $p | $N | ${ir:-?} | **$per** |")
        echo
        echo "=== $label: $N requests, ${ir:-?} instructions in $SUBJECT => $per instructions/request (rps under $TOOL: ${rps:-?})"
        echo "--- top $TOP by self cost ($OUT/self-$label.txt)"
        if [[ $TOOL == callgrind ]]; then
            sed -n '/file:function/,$p' "$OUT/self-$label.txt" | sed -n "3,$((TOP + 2))p" | fold
            echo "--- top $TOP by inclusive cost ($OUT/inclusive-$label.txt)"
            sed -n '/file:function/,$p' "$OUT/inclusive-$label.txt" | sed -n "3,$((TOP + 2))p" | fold
        else
            grep -E '^ +[0-9.]+%' "$OUT/self-$label.txt" | head -n "$TOP" | fold
            echo "--- top $TOP by inclusive cost ($OUT/inclusive-$label.txt)"
            grep -E '^ +[0-9.]+%' "$OUT/inclusive-$label.txt" | head -n "$TOP" | fold
        fi
    done
done
if [[ $TOOL == kernel ]]; then
    {
        echo
        echo "CPU per request ($SUBJECT, all threads, /proc/PID/stat, perf's sampling at 999 Hz included; release build with debug info at full speed; $CLIENTS clients) and where perf's cpu-clock samples fall (inclusive shares: the loopback receive path and the reader's wake-up run inside sendto)."
        echo
        echo "System calls and context switches per request: perf stat on the syscall tracepoints (\"?\" when tracefs is not available)."
        echo
        echo "| workload | P | requests | rps | user µs/req | system µs/req | sendto | recvfrom | epoll_wait | context switches | sampled time |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        printf '%s\n' "${SUMMARY[@]}"
    } | tee "$OUT/summary.md"
    log "files in $OUT (perf report -i $OUT/perf-LABEL.data for more)"
    exit 0
fi
{
    echo
    echo "Instructions per request ($SUBJECT, all threads; $TOOL; $CLIENTS clients)."
    [[ $TOOL == callgrind ]] && echo "User-space instructions only: the kernel's share (syscalls, loopback TCP) is not counted."
    echo
    echo "| workload | P | requests | instructions | per request |"
    echo "|---|---:|---:|---:|---:|"
    printf '%s\n' "${SUMMARY[@]}"
} | tee "$OUT/summary.md"
log "files in $OUT (callgrind_annotate $OUT/callgrind.out.LABEL for more)"
