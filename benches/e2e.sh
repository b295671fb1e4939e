#!/usr/bin/env bash
# e2e.sh — end-to-end benchmark: slotgate vs direct Redis, Twemproxy, predixy and
# redis-cluster-proxy, on real servers.
#
# Usage (from anywhere; paths are relative to the repository root):
#   bash benches/e2e.sh [compare]   # the side-by-side table and charts (default)
#   bash benches/e2e.sh idle        # 10 000 idle client connections: KiB each, accept storm
#   bash benches/e2e.sh scale       # --workers 2 vs --workers 1 at pipeline 16
#   bash benches/e2e.sh all         # the three, one after the other
#   QUICK=1 bash benches/e2e.sh all # smoke test: short runs, one round (numbers mean nothing)
#
# What it starts (every process on 127.0.0.1, on free ports picked at start, with no
# persistence; all of them stopped by PID when the script exits, fails or is interrupted):
#   redis          one redis-server                          target "redis" (direct baseline)
#   3 standalone   redis-servers for the pool-mode comparison
#   3-master Redis Cluster (no replicas)
#   slotgate       release build, cluster mode over the cluster   target "slotgate"
#   predixy        PREDIXY_BIN over the same cluster, WorkerThreads = WORKERS    target "predixy"
#   rcp            RCP_BIN (redis-cluster-proxy) over the same cluster, --threads WORKERS,
#                  --enable-cross-slot                          target "rcp"
#                  (both only when their binary is given; build them with
#                  ../shared/bench/build-peers.sh, see docs/BENCHMARKS.md)
#   slotgate-pool  release build, pool mode over the 3 standalone servers, Twemproxy's placement
#                  (ketama, fnv1a_64)                           target "slotgate-pool"
#   twemproxy      Debian `nutcracker`, over the same 3 standalone servers (when installed)
#   cluster        (only when listed in TARGETS) redis-benchmark --cluster straight to the cluster
#   relay-epoll, relay-uring  (only when listed in TARGETS) benches/relay_floor.rs over the same
#                  cluster: the kernel floor of a proxy's data path under epoll and io_uring
#                  (SET and GET only; docs/BENCHMARKS.md "The floor of any proxy here")
#   relay-work     (only when listed) the epoll relay doing slotgate's per-request work
#                  (`--work slotgate`): slotgate's cost on an event loop of its own
# redis-servers and proxies are pinned to SERVER_CPUS, redis-benchmark to CLIENT_CPUS
# (taskset). Targets are interleaved (A B C A B C …) over REPS rounds; workloads SET, GET,
# MSET and MGET (10 random keys) at pipeline 1 and 16, 50 clients, 32-byte values, 100k
# random keys (pre-filled through each target for GET/MGET). Reported per workload and
# target: medians of requests/s, p50/p99 latency, CPU µs per request of the proxy process
# (utime+stime from /proc/PID/stat) and of the backends, and ratios against direct Redis and
# against every other proxy present.
#
# Results: OUT/compare|idle|scale/ — raw.csv, summary.md|csv|json, rps.svg, cpu.svg, logs/ —
# and OUT/env.txt (machine, versions, settings, command lines). DOCS=1 also copies the
# charts to docs/bench/ for docs/BENCHMARKS.md.
#
# Environment (defaults in brackets):
#   QUICK [0]           1: REPS=1 DURATION=1, short calibration, no retries
#   REPS [3]  DURATION [6] (seconds per run)  CLIENTS [50]  KEYSPACE [100000]  VALUE [32]
#   WORKLOADS ["set get mset mget"]  PIPELINES ["1 16"]
#   TARGETS ["redis slotgate predixy rcp twemproxy slotgate-pool"]  (also: cluster,
#                       relay-epoll, relay-uring, relay-work);
#                       twemproxy is left out with a note when nutcracker is not installed,
#                       predixy and rcp when PREDIXY_BIN / RCP_BIN are not given
#   RELAY_BIN [target/release/examples/relay_floor]  the relay targets' binary (built
#                       when not given)
#   PREDIXY_BIN [""]    predixy binary (github.com/joyieldInc/predixy): target "predixy"
#   RCP_BIN [""]        redis-cluster-proxy binary (github.com/RedisLabs/redis-cluster-proxy):
#                       target "rcp"
#   RCP_SKIP ["mset/16:mget/16"]  workload/pipeline cells rcp leaves out (it hangs or crashes
#                       on pipelined cross-slot MSET/MGET); "" runs them all
#   WORKERS [1]         slotgate --workers for compare and idle; also predixy's WorkerThreads
#                       and rcp's --threads
#   SERVER_CPUS [1]  CLIENT_CPUS [0]  PROXY_CPUS [SERVER_CPUS]   "" = no pinning
#   IDLE_CONNS [10000]  idle mode: connections to open (max_clients is set above it)
#   SCALE_PIPELINE [16]  SCALE_WORKLOADS ["set get"]  SCALE_PROCS [2] (redis-benchmark
#                       processes per run)  SCALE_SERVER_CPUS / SCALE_PROXY_CPUS /
#                       SCALE_CLIENT_CPUS [all ""]: unpinned by default, see docs/BENCHMARKS.md
#   SCALE_QUOTA [""]    cores of CPU time per worker each slotgate may use (e.g. 0.2): a
#                       cgroup CPU quota (root; cgroup v1 `cpu` or v2 `cpu.max`) caps
#                       --workers 1 at SCALE_QUOTA and --workers 2 at twice it, so the proxy,
#                       not the shared machine, is the bottleneck (docs/BENCHMARKS.md)
#   FOREIGN_MAX [0.15]  RETRIES [3]  RETRY_BUDGET [600]   a run during which other processes
#                       used > FOREIGN_MAX cores is retried after a quiet period
#   OUT [target/e2e-bench/DATE]   SLOTGATE_BIN [target/release/slotgate, built if stale]
#   DOCS [0]            1: copy compare charts to docs/bench/{rps,cpu}.svg
#
# Needs: redis-server, redis-cli, redis-benchmark (Debian: redis-server redis-tools),
# optionally nutcracker (Debian: nutcracker), predixy and redis-cluster-proxy (PREDIXY_BIN,
# RCP_BIN), python3 (standard library only), taskset, cargo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
E2E=$ROOT/benches/e2e

MODE=${1:-compare}
case $MODE in
    compare | idle | scale | all) ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "e2e.sh: unknown mode '$MODE' (compare, idle, scale, all)" >&2; exit 2 ;;
esac

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    export REPS=${REPS:-1} DURATION=${DURATION:-1} CAL_MIN_S=${CAL_MIN_S:-0.3}
    export CAL_N=${CAL_N:-5000} MIN_N=${MIN_N:-5000} RETRIES=${RETRIES:-0}
fi
export REPS=${REPS:-3} DURATION=${DURATION:-6} CLIENTS=${CLIENTS:-50}
export KEYSPACE=${KEYSPACE:-100000} VALUE=${VALUE:-32}
export WORKLOADS=${WORKLOADS:-"set get mset mget"} PIPELINES=${PIPELINES:-"1 16"}
export FOREIGN_MAX=${FOREIGN_MAX:-0.15} RETRIES=${RETRIES:-3} RETRY_BUDGET=${RETRY_BUDGET:-600}
TARGETS=${TARGETS:-"redis slotgate predixy rcp twemproxy slotgate-pool"}
PREDIXY_BIN=${PREDIXY_BIN:-}
RCP_BIN=${RCP_BIN:-}
RCP_SKIP=${RCP_SKIP-mset/16:mget/16}
WORKERS=${WORKERS:-1}
SERVER_CPUS=${SERVER_CPUS-1}
CLIENT_CPUS=${CLIENT_CPUS-0}
PROXY_CPUS=${PROXY_CPUS-$SERVER_CPUS}
IDLE_CONNS=${IDLE_CONNS:-10000}
SCALE_PIPELINE=${SCALE_PIPELINE:-16}
SCALE_WORKLOADS=${SCALE_WORKLOADS:-"set get"}
SCALE_PROCS=${SCALE_PROCS:-2}
SCALE_SERVER_CPUS=${SCALE_SERVER_CPUS-}
SCALE_PROXY_CPUS=${SCALE_PROXY_CPUS-}
SCALE_CLIENT_CPUS=${SCALE_CLIENT_CPUS-}
SCALE_QUOTA=${SCALE_QUOTA:-}
OUT=${OUT:-target/e2e-bench/$(date +%Y%m%d-%H%M%S)}
BIN=${SLOTGATE_BIN:-target/release/slotgate}
DOCS=${DOCS:-0}

die() { echo "e2e.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

# ------------------------------------------------------------------ prerequisites
missing=()
for b in redis-server redis-cli redis-benchmark; do command -v $b >/dev/null || missing+=("$b"); done
if ((${#missing[@]})); then
    die "missing ${missing[*]}. On Debian/Ubuntu: sudo apt-get install -y redis-server redis-tools nutcracker"
fi
command -v python3 >/dev/null || die "python3 is needed (standard library only)"
HAVE_TWEM=0
command -v nutcracker >/dev/null && HAVE_TWEM=1
if [[ $HAVE_TWEM == 0 && $TARGETS == *twemproxy* ]]; then
    log "nutcracker is not installed: Twemproxy left out (Debian/Ubuntu: sudo apt-get install -y nutcracker)"
    TARGETS=${TARGETS//twemproxy/}
fi
# peer_bin TARGET VAR DESCRIPTION: keep TARGET only when the binary in $VAR is given and
# executable; otherwise a note, and TARGET is left out
peer_bin() {
    local t=$1 var=$2 what=$3 bin=${!2}
    [[ " $TARGETS " == *" $t "* ]] || return 0
    if [[ -z $bin ]]; then
        log "$var not given: $what left out (build it with ../shared/bench/build-peers.sh, see docs/BENCHMARKS.md)"
    elif [[ ! -x $bin ]]; then
        log "$var=$bin is not an executable: $what left out"
    else
        printf -v "$var" %s "$(realpath "$bin")"
        return 0
    fi
    TARGETS=$(sed "s/\(^\| \)$t\( \|$\)/ /g" <<<" $TARGETS ")
}
peer_bin predixy PREDIXY_BIN "predixy"
peer_bin rcp RCP_BIN "redis-cluster-proxy (rcp)"
TARGETS=$(echo $TARGETS) # one space between names
if [[ -n $SERVER_CPUS$CLIENT_CPUS$PROXY_CPUS$SCALE_SERVER_CPUS$SCALE_PROXY_CPUS$SCALE_CLIENT_CPUS ]]; then
    if ! command -v taskset >/dev/null; then
        log "no taskset (util-linux): running unpinned"
        SERVER_CPUS='' CLIENT_CPUS='' PROXY_CPUS='' SCALE_SERVER_CPUS='' SCALE_PROXY_CPUS='' SCALE_CLIENT_CPUS=''
    elif (($(nproc) < 2)); then
        log "only $(nproc) CPU: running unpinned"
        SERVER_CPUS='' CLIENT_CPUS='' PROXY_CPUS='' SCALE_SERVER_CPUS='' SCALE_PROXY_CPUS='' SCALE_CLIENT_CPUS=''
    fi
fi
export CLIENT_CPUS

if [[ -z ${SLOTGATE_BIN:-} ]]; then
    if command -v cargo >/dev/null; then
        log "cargo build --release (no-op when the binary is up to date)"
        cargo build --release --quiet --bin slotgate || die "cargo build --release failed"
    fi
fi
[[ -x $BIN ]] || die "no slotgate binary at $BIN (cargo build --release)"
if [[ " $TARGETS " == *" relay-"* && -z ${RELAY_BIN:-} ]]; then
    log "cargo build --release --example relay_floor"
    cargo build --release --quiet --example relay_floor || die "building relay_floor failed"
fi
RELAY_BIN=${RELAY_BIN:-target/release/examples/relay_floor}
# slotgate refuses unknown SLOTGATE_* variables in its environment: keep this one to ourselves.
export -n SLOTGATE_BIN

# Idle mode needs many descriptors: raise the open-files limit of everything started from
# here (slotgate, the idle client) to IDLE_CONNS + 1000 (root may go past the hard limit),
# else to the hard limit.
need=$((IDLE_CONNS + 1000))
if [[ $(ulimit -n) != unlimited ]] && (($(ulimit -n) < need)); then
    ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RUN=$OUT/run
mkdir -p "$RUN"

# ------------------------------------------------------------------ expected duration
ntargets=$(wc -w <<<"$TARGETS")
cells=$(($(wc -w <<<"$WORKLOADS") * $(wc -w <<<"$PIPELINES") * ntargets))
est_compare=$(awk -v c="$cells" -v r="$REPS" -v d="$DURATION" -v q="$QUICK" \
    'BEGIN{ print int(c * (r * d + (q == 1 ? 1 : 4)) + 30) }')
est_idle=$(awk -v r="$REPS" -v d="$DURATION" 'BEGIN{ print int(r * (3 * d + 8) + 20) }')
est_scale=$(awk -v w="$(wc -w <<<"$SCALE_WORKLOADS")" -v r="$REPS" -v d="$DURATION" -v q="$QUICK" \
    'BEGIN{ print int(2 * w * (r * d + (q == 1 ? 1 : 4)) + 20) }')
case $MODE in
    compare) est=$est_compare ;; idle) est=$est_idle ;; scale) est=$est_scale ;;
    all) est=$((est_compare + est_idle + est_scale)) ;;
esac
log "mode $MODE: expected duration about $(((est + 59) / 60)) min (REPS=$REPS DURATION=${DURATION}s, more if runs are retried on a busy machine); results in $OUT"
# every drive is also hard-limited (runs left are skipped) to 3x its estimate + 5 min
hard_limit() { echo $(($1 * 3 + 300)); }

# ------------------------------------------------------------------ process bookkeeping
PIDS=()
CGROUPS=() # made by cap_cpu, removed on exit once their processes are gone
CHILD=
# run_child CMD...: run a long foreground step in the background and wait for it, so that a
# TERM/INT reaches the trap at once (bash runs traps only between foreground commands)
run_child() {
    local rc=0
    "$@" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=
    return "$rc"
}
cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    if [[ -n $CHILD ]]; then kill "$CHILD" 2>/dev/null || true; wait "$CHILD" 2>/dev/null || true; fi
    if ((${#PIDS[@]})); then
        log "stopping ${#PIDS[@]} process(es) by PID"
        for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; done
        for pid in "${PIDS[@]}"; do
            for i in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
            alive "$pid" && { kill -9 "$pid" 2>/dev/null || true; }
            wait "$pid" 2>/dev/null || true
        done
    fi
    for i in "${CGROUPS[@]}"; do rmdir "$i" 2>/dev/null || true; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORTS=()
take_ports() { # N -> appends N free loopback ports to PORTS
    local p
    # shellcheck disable=SC2207
    p=($(E2E_TAKEN_PORTS="${PORTS[*]:-}" python3 "$E2E/ports.py" "$1")) || die "no free ports"
    PORTS+=("${p[@]}")
    echo "${p[@]}"
}

# spawn NAME CPUS CMD... : start CMD in the background, pinned to CPUS unless empty; its PID
# (taskset execs CMD, so it is CMD's own) goes to PIDS and RUN/NAME.pid; output to RUN/NAME.log
spawn() {
    local name=$1 cpus=$2; shift 2
    if [[ -n $cpus ]]; then
        taskset -c "$cpus" "$@" > "$RUN/$name.log" 2>&1 < /dev/null &
    else
        "$@" > "$RUN/$name.log" 2>&1 < /dev/null &
    fi
    local pid=$!
    PIDS+=("$pid")
    echo "$pid" > "$RUN/$name.pid"
    echo "$name $pid $(printf '%q ' "$@")" >> "$RUN/commands.txt"
}

alive() { # pid -> true while running (a child that exited stays a zombie until reaped)
    [[ -r /proc/$1/stat && $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

wait_ping() { # port name pid
    local i
    for i in $(seq 1 150); do
        [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]] && return 0
        alive "$3" || break
        sleep 0.1
    done
    echo "--- $RUN/$2.log:" >&2; tail -20 "$RUN/$2.log" >&2 || true
    die "$2 (pid $3) does not answer PING on 127.0.0.1:$1"
}

redis_start() { # name port cpus [bus-port]
    local name=$1 port=$2 cpus=$3 bus=${4:-} d=$RUN/$1
    mkdir -p "$d"
    # A reused OUT keeps an earlier run's cluster state; a node must start empty.
    rm -f "$d/nodes.conf"
    local args=(--port "$port" --bind 127.0.0.1 --protected-mode no --save "" --appendonly no
                --dir "$d" --daemonize no --logfile "$d/redis.log")
    [[ -n $bus ]] && args+=(--cluster-enabled yes --cluster-config-file "$d/nodes.conf"
                            --cluster-port "$bus" --cluster-node-timeout 5000)
    spawn "$name" "$cpus" redis-server "${args[@]}"
    wait_ping "$port" "$name" "$(cat "$RUN/$name.pid")"
}

# cap_cpu NAME PID CORES: let PID (all its threads) use at most CORES of CPU time, through
# a new cgroup (v1 `cpu` controller, else v2 with `cpu` enabled at the root), 10 ms periods so
# the cap is smooth at the run's time scale. Dies when no writable cpu controller is found.
cap_cpu() {
    local name=$1 pid=$2 cores=$3 period=10000 quota dir
    quota=$(awk -v c="$cores" -v p="$period" 'BEGIN { q = int(c * p); print (q >= 1000 ? q : "") }')
    [[ -n $quota ]] || die "SCALE_QUOTA=$cores: at least 0.1 core per worker"
    if [[ -w /sys/fs/cgroup/cpu/cgroup.procs ]]; then
        dir=/sys/fs/cgroup/cpu/slotgate-bench-$$-$name
        mkdir "$dir" || die "cannot create $dir"
        CGROUPS+=("$dir")
        { echo "$period" > "$dir/cpu.cfs_period_us" && echo "$quota" > "$dir/cpu.cfs_quota_us"; } \
            || die "cannot set a CPU quota in $dir"
    elif grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
        dir=/sys/fs/cgroup/slotgate-bench-$$-$name
        mkdir "$dir" || die "cannot create $dir"
        CGROUPS+=("$dir")
        echo "$quota $period" > "$dir/cpu.max" || die "cannot set a CPU quota in $dir"
    else
        die "SCALE_QUOTA needs root and a writable cgroup cpu controller (/sys/fs/cgroup/cpu, or cgroup v2 with +cpu in /sys/fs/cgroup/cgroup.subtree_control)"
    fi
    echo "$pid" > "$dir/cgroup.procs" || die "cannot move $name (pid $pid) into $dir"
    log "$name: capped at $cores core(s) of CPU ($quota µs per $period µs, $dir)"
}

pids_of() { local n p=(); for n in "$@"; do p+=("$(cat "$RUN/$n.pid")"); done; local IFS=:; echo "${p[*]}"; }

# ------------------------------------------------------------------ topology
STARTED_REDIS=0 STARTED_POOL=0 STARTED_CLUSTER=0
start_redis() {
    ((STARTED_REDIS)) && return; STARTED_REDIS=1
    read -r P_REDIS <<<"$(take_ports 1)"
    redis_start redis "$P_REDIS" "$SERVER_CPUS"
    log "redis: 127.0.0.1:$P_REDIS"
}

start_standalone() {
    ((STARTED_POOL)) && return; STARTED_POOL=1
    # shellcheck disable=SC2207
    P_SA=($(take_ports 3))
    local i
    for i in 0 1 2; do redis_start "sa$i" "${P_SA[$i]}" "$SERVER_CPUS"; done
    log "standalone servers: ${P_SA[*]}"
}

start_cluster() { # cpus
    ((STARTED_CLUSTER)) && return; STARTED_CLUSTER=1
    local cpus=$1 i
    # shellcheck disable=SC2207
    P_C=($(take_ports 6))
    for i in 0 1 2; do redis_start "c$i" "${P_C[$i]}" "$cpus" "${P_C[$((i + 3))]}"; done
    timeout 60 redis-cli --cluster create "127.0.0.1:${P_C[0]}" "127.0.0.1:${P_C[1]}" \
        "127.0.0.1:${P_C[2]}" --cluster-yes > "$RUN/cluster-create.log" 2>&1 \
        || { cat "$RUN/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
    local ok=0
    for i in $(seq 1 150); do
        ok=1
        for p in "${P_C[@]:0:3}"; do
            timeout 2 redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ok=0
        done
        ((ok)) && break
        sleep 0.2
    done
    ((ok)) || die "the cluster did not reach cluster_state:ok"
    log "cluster: ${P_C[*]:0:3} (bus ${P_C[*]:3:3})"
}

# slotgate_cluster NAME WORKERS CPUS MAX_CLIENTS -> sets PORT_<name>
slotgate_cluster() {
    local name=$1 workers=$2 cpus=$3 maxc=$4 port
    read -r port <<<"$(take_ports 1)"
    cat > "$RUN/$name.toml" <<EOF
[proxy]
listen = "127.0.0.1:$port"
workers = $workers
max_clients = $maxc

[cluster]
seeds = ["127.0.0.1:${P_C[0]}", "127.0.0.1:${P_C[1]}", "127.0.0.1:${P_C[2]}"]
EOF
    spawn "$name" "$cpus" "$BIN" --config "$RUN/$name.toml" --log-level warn
    wait_ping "$port" "$name" "$(cat "$RUN/$name.pid")"
    printf -v "PORT_${name//-/_}" %s "$port"
    log "$name: 127.0.0.1:$port, pid $(cat "$RUN/$name.pid"), --workers $workers, cluster mode"
}

start_slotgate_pool() {
    local port i
    read -r port <<<"$(take_ports 1)"
    {
        echo "[proxy]"
        echo "listen = \"127.0.0.1:$port\""
        echo "workers = $WORKERS"
        echo
        for i in 0 1 2; do
            echo "[pools.s$((i + 1))]"
            echo "master = \"127.0.0.1:${P_SA[$i]}\""
            echo "weight = 1"
            echo "ketama_name = \"s$((i + 1))\""
            echo
        done
        echo "[placement]"
        echo "distribution = \"ketama\""
        echo "hash = \"fnv1a_64\""
    } > "$RUN/slotgate-pool.toml"
    spawn slotgate-pool "$PROXY_CPUS" "$BIN" --config "$RUN/slotgate-pool.toml" --log-level warn
    wait_ping "$port" slotgate-pool "$(cat "$RUN/slotgate-pool.pid")"
    PORT_slotgate_pool=$port
    log "slotgate-pool: 127.0.0.1:$port, pid $(cat "$RUN/slotgate-pool.pid"), pool mode, ketama fnv1a_64"
}

start_twemproxy() {
    local port stats i
    read -r port stats <<<"$(take_ports 2)"
    {
        echo "bench:"
        echo "  listen: 127.0.0.1:$port"
        echo "  hash: fnv1a_64"
        echo "  distribution: ketama"
        echo "  redis: true"
        echo "  auto_eject_hosts: false"
        echo "  preconnect: true"
        echo "  server_connections: 1"
        echo "  timeout: 5000"
        echo "  servers:"
        for i in 0 1 2; do echo "   - 127.0.0.1:${P_SA[$i]}:1 s$((i + 1))"; done
    } > "$RUN/nutcracker.yml"
    nutcracker -t -c "$RUN/nutcracker.yml" > "$RUN/nutcracker-check.log" 2>&1 \
        || { cat "$RUN/nutcracker-check.log" >&2; die "nutcracker rejects its config"; }
    spawn twemproxy "$PROXY_CPUS" nutcracker -c "$RUN/nutcracker.yml" -s "$stats" -a 127.0.0.1 \
        -o "$RUN/nutcracker.out" -v 4
    wait_ping "$port" twemproxy "$(cat "$RUN/twemproxy.pid")"
    PORT_twemproxy=$port
    log "twemproxy: 127.0.0.1:$port, pid $(cat "$RUN/twemproxy.pid") (stats $stats)"
}

# start_predixy: predixy over the cluster (ClusterServerPool, masters only), WorkerThreads =
# WORKERS, the settings of the team's shared harness (../shared/bench/peers.sh)
start_predixy() {
    local port i
    read -r port <<<"$(take_ports 1)"
    {
        echo "Name predixy"
        echo "Bind 127.0.0.1:$port"
        echo "WorkerThreads $WORKERS"
        echo "ClientTimeout 0"
        echo "Log $RUN/predixy.out"
        echo "LogVerbSample 0"
        echo "LogDebugSample 0"
        echo "LogInfoSample 0"
        echo "LogNoticeSample 1"
        echo "LogWarnSample 1"
        echo "LogErrorSample 1"
        echo "Authority {"
        echo "    Auth {"
        echo "        Mode admin"
        echo "    }"
        echo "}"
        echo "ClusterServerPool {"
        echo "    MasterReadPriority 100"
        echo "    StaticSlaveReadPriority 0"
        echo "    DynamicSlaveReadPriority 0"
        echo "    RefreshInterval 1"
        echo "    ServerTimeout 0"
        echo "    ServerFailureLimit 10"
        echo "    ServerRetryTimeout 1"
        echo "    KeepAlive 0"
        echo "    Servers {"
        for i in 0 1 2; do echo "        + 127.0.0.1:${P_C[$i]}"; done
        echo "    }"
        echo "}"
    } > "$RUN/predixy.conf"
    spawn predixy "$PROXY_CPUS" "$PREDIXY_BIN" "$RUN/predixy.conf"
    wait_ping "$port" predixy "$(cat "$RUN/predixy.pid")"
    PORT_predixy=$port
    log "predixy: 127.0.0.1:$port, pid $(cat "$RUN/predixy.pid"), WorkerThreads $WORKERS, over the cluster"
}

# start_rcp: redis-cluster-proxy over the cluster, --threads WORKERS, cross-slot commands on
# (MSET/MGET of random keys are refused without it)
start_rcp() {
    local port
    read -r port <<<"$(take_ports 1)"
    spawn rcp "$PROXY_CPUS" "$RCP_BIN" --port "$port" --bind 127.0.0.1 --threads "$WORKERS" \
        --disable-colors --log-level warning --logfile "$RUN/rcp.out" --enable-cross-slot \
        "127.0.0.1:${P_C[0]}" "127.0.0.1:${P_C[1]}" "127.0.0.1:${P_C[2]}"
    wait_ping "$port" rcp "$(cat "$RUN/rcp.pid")"
    PORT_rcp=$port
    log "rcp: 127.0.0.1:$port, pid $(cat "$RUN/rcp.pid"), --threads $WORKERS, over the cluster"
}

# start_relay NAME: benches/relay_floor.rs over the cluster as target relay-NAME (epoll, uring:
# that io driver; work: epoll with slotgate's per-request work), its slot ranges read from
# CLUSTER NODES -> sets PORT_relay_<NAME>
start_relay() {
    local io=$1 port routes work=()
    [[ $io == work ]] && work=(--work slotgate)
    [[ -x $RELAY_BIN ]] || die "no relay_floor binary at $RELAY_BIN"
    read -r port <<<"$(take_ports 1)"
    # shellcheck disable=SC2207
    routes=($(redis-cli -p "${P_C[0]}" cluster nodes | awk '$3 ~ /master/ {
        split($2, a, "@"); for (i = 9; i <= NF; i++) if ($i ~ /^[0-9]+(-[0-9]+)?$/) {
            r = $i; if (r !~ /-/) r = r "-" r; print "--route", r "=" a[1] } }'))
    ((${#routes[@]})) || die "no slot ranges in CLUSTER NODES for relay-$io"
    spawn "relay-$io" "$PROXY_CPUS" "$RELAY_BIN" --io "${io/work/epoll}" "${work[@]}" \
        --listen "127.0.0.1:$port" "${routes[@]}"
    wait_ping "$port" "relay-$io" "$(cat "$RUN/relay-$io.pid")"
    printf -v "PORT_relay_$io" %s "$port"
    log "relay-$io: 127.0.0.1:$port, pid $(cat "$RUN/relay-$io.pid"), over the cluster"
}

env_txt() {
    {
        echo "date: $(date -u +%FT%TZ)"
        echo "host: $(uname -srm), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
        echo "slotgate: $($BIN --version 2>/dev/null | head -1), git $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
        echo "redis-server: $(redis-server --version | head -1)"
        echo "redis-benchmark: $(redis-benchmark --version 2>&1 | head -1)"
        [[ $HAVE_TWEM == 1 ]] && echo "nutcracker: $(nutcracker -V 2>&1 | head -1)"
        if [[ " $TARGETS " == *" predixy "* ]]; then
            echo "predixy: $("$PREDIXY_BIN" --version 2>&1 | head -1 | sed 's/.* //'), $PREDIXY_BIN (sha256 $(sha256sum "$PREDIXY_BIN" | cut -c1-12))"
        fi
        if [[ " $TARGETS " == *" relay-"* ]]; then
            echo "relay_floor: $RELAY_BIN (sha256 $(sha256sum "$RELAY_BIN" | cut -c1-12))"
        fi
        if [[ " $TARGETS " == *" rcp "* ]]; then # it reports no real version (999.999.999)
            echo "redis-cluster-proxy: $RCP_BIN (sha256 $(sha256sum "$RCP_BIN" | cut -c1-12))"
        fi
        echo "settings: MODE=$MODE QUICK=$QUICK REPS=$REPS DURATION=$DURATION CLIENTS=$CLIENTS KEYSPACE=$KEYSPACE VALUE=$VALUE WORKLOADS='$WORKLOADS' PIPELINES='$PIPELINES' TARGETS='$TARGETS' WORKERS=$WORKERS"
        echo "pinning: SERVER_CPUS='$SERVER_CPUS' PROXY_CPUS='$PROXY_CPUS' CLIENT_CPUS='$CLIENT_CPUS' (scale: server '$SCALE_SERVER_CPUS' proxy '$SCALE_PROXY_CPUS' client '$SCALE_CLIENT_CPUS', $SCALE_PROCS redis-benchmark processes, SCALE_QUOTA='$SCALE_QUOTA')"
        echo "open files limit: $(ulimit -n)"
        echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    } > "$OUT/env.txt"
}

subtitle() {
    local s="$(date -u +%F), $(nproc) CPUs, slotgate $(git rev-parse --short HEAD 2>/dev/null), $1"
    [[ $QUICK == 1 ]] && s="QUICK=1 SMOKE RUN, NOT A MEASUREMENT. $s"
    echo "$s"
}

# ------------------------------------------------------------------ modes
fill() { # name port
    run_child timeout 300 python3 "$E2E/fill.py" "$2" "$KEYSPACE" "$VALUE" > "$RUN/fill-$1.log" 2>&1 \
        || die "pre-filling through $1 failed: $(tail -1 "$RUN/fill-$1.log")"
}

mode_compare() {
    local d=$OUT/compare t specs=()
    mkdir -p "$d"
    for t in $TARGETS; do
        case $t in
            redis) start_redis ;;
            slotgate | cluster | predixy | rcp | relay-epoll | relay-uring | relay-work) start_cluster "$SERVER_CPUS" ;;
            twemproxy | slotgate-pool) start_standalone ;;
            *) die "unknown target '$t' (redis slotgate predixy rcp twemproxy slotgate-pool cluster relay-epoll relay-uring relay-work)" ;;
        esac
    done
    for t in $TARGETS; do
        case $t in
            redis) specs+=("redis=$P_REDIS@srv=$(pids_of redis)") ;;
            cluster) specs+=("cluster=${P_C[0]}@cluster,srv=$(pids_of c0 c1 c2)") ;;
            slotgate)
                slotgate_cluster slotgate "$WORKERS" "$PROXY_CPUS" 10000
                specs+=("slotgate=$PORT_slotgate@pid=$(pids_of slotgate),srv=$(pids_of c0 c1 c2)") ;;
            predixy)
                start_predixy
                specs+=("predixy=$PORT_predixy@pid=$(pids_of predixy),srv=$(pids_of c0 c1 c2)") ;;
            rcp)
                start_rcp
                specs+=("rcp=$PORT_rcp@pid=$(pids_of rcp),srv=$(pids_of c0 c1 c2)${RCP_SKIP:+,skip=$RCP_SKIP}") ;;
            relay-epoll | relay-uring | relay-work)
                start_relay "${t#relay-}"
                local relay_port=PORT_relay_${t#relay-}
                specs+=("$t=${!relay_port}@pid=$(pids_of "$t"),srv=$(pids_of c0 c1 c2),skip=mset/1:mset/16:mget/1:mget/16") ;;
            twemproxy)
                start_twemproxy
                specs+=("twemproxy=$PORT_twemproxy@pid=$(pids_of twemproxy),srv=$(pids_of sa0 sa1 sa2)") ;;
            slotgate-pool)
                start_slotgate_pool
                specs+=("slotgate-pool=$PORT_slotgate_pool@pid=$(pids_of slotgate-pool),srv=$(pids_of sa0 sa1 sa2)") ;;
        esac
    done
    if [[ $WORKLOADS == *get* ]]; then
        for s in "${specs[@]}"; do
            [[ $s == cluster=* ]] && continue
            t=${s%%=*}; local port=${s#*=}; port=${port%%@*}
            log "pre-filling $KEYSPACE keys through $t"
            fill "$t" "$port"
        done
    fi
    env_txt
    log "compare: targets ${specs[*]}"
    MAX_SECONDS=$(hard_limit "$est_compare") run_child python3 "$E2E/drive.py" --out "$d/raw.csv" "${specs[@]}"
    local base=redis
    [[ " $TARGETS " == *" redis "* ]] || base=${TARGETS%% *}
    python3 "$E2E/report.py" --dir "$d" --baseline "$base" --charts \
        --title "### slotgate end-to-end benchmark ($(date -u +%F))" \
        --subtitle "$(subtitle "REPS=$REPS, ${DURATION}s runs, $CLIENTS clients, slotgate --workers $WORKERS")" \
        "$d/raw.csv" > /dev/null
    cat "$d/summary.md"
    if [[ $DOCS == 1 ]]; then
        mkdir -p docs/bench
        cp "$d/rps.svg" docs/bench/rps.svg
        [[ -f $d/cpu.svg ]] && cp "$d/cpu.svg" docs/bench/cpu.svg
        log "charts copied to docs/bench/"
    fi
    log "compare results: $d (summary.md, summary.csv, summary.json, rps.svg, cpu.svg, raw.csv)"
}

mode_idle() {
    local d=$OUT/idle
    mkdir -p "$d"
    start_cluster "$SERVER_CPUS"
    if (($(ulimit -n) < IDLE_CONNS + 200)); then
        log "open-files limit $(ulimit -n) < $((IDLE_CONNS + 200)): some connections will fail (raise the hard limit: ulimit -Hn)"
    fi
    slotgate_cluster slotgate-idle "$WORKERS" "$PROXY_CPUS" $((IDLE_CONNS + 1000))
    env_txt
    run_child python3 "$E2E/idle.py" run --pid "$(cat "$RUN/slotgate-idle.pid")" --port "$PORT_slotgate_idle" \
        --conns "$IDLE_CONNS" --out "$d"
    log "idle results: $d (idle.md, idle.csv, idle.json)"
}

mode_scale() {
    local d=$OUT/scale
    mkdir -p "$d"
    if ((STARTED_CLUSTER)); then # started by an earlier mode (all): re-pin its servers
        local p
        for p in $(pids_of c0 c1 c2 | tr : ' '); do
            taskset -a -pc "${SCALE_SERVER_CPUS:-0-$(($(nproc) - 1))}" "$p" > /dev/null
        done
    fi
    start_cluster "$SCALE_SERVER_CPUS"
    slotgate_cluster slotgate-w1 1 "$SCALE_PROXY_CPUS" 10000
    slotgate_cluster slotgate-w2 2 "$SCALE_PROXY_CPUS" 10000
    local cap=none
    if [[ -n $SCALE_QUOTA ]]; then
        cap_cpu slotgate-w1 "$(cat "$RUN/slotgate-w1.pid")" "$SCALE_QUOTA"
        cap_cpu slotgate-w2 "$(cat "$RUN/slotgate-w2.pid")" "$(awk -v q="$SCALE_QUOTA" 'BEGIN { print 2 * q }')"
        cap="$SCALE_QUOTA core per worker"
    fi
    env_txt
    local specs=("slotgate-w1=$PORT_slotgate_w1@pid=$(pids_of slotgate-w1),srv=$(pids_of c0 c1 c2)"
                 "slotgate-w2=$PORT_slotgate_w2@pid=$(pids_of slotgate-w2),srv=$(pids_of c0 c1 c2)")
    if [[ $SCALE_WORKLOADS == *get* ]]; then
        log "pre-filling $KEYSPACE keys"
        fill slotgate-w1 "$PORT_slotgate_w1"
    fi
    CLIENT_CPUS=$SCALE_CLIENT_CPUS MAX_SECONDS=$(hard_limit "$est_scale") run_child python3 "$E2E/drive.py" \
        --out "$d/raw.csv" --workloads "$SCALE_WORKLOADS" --pipelines "$SCALE_PIPELINE" \
        --procs "$SCALE_PROCS" "${specs[@]}"
    python3 "$E2E/report.py" --dir "$d" --baseline slotgate-w1 --ours slotgate-w2 --charts \
        --title "### slotgate --workers 2 vs --workers 1 ($(date -u +%F))" \
        --subtitle "$(subtitle "P$SCALE_PIPELINE, $SCALE_PROCS redis-benchmark processes, pinning: servers '${SCALE_SERVER_CPUS:-none}' proxies '${SCALE_PROXY_CPUS:-none}' client '${SCALE_CLIENT_CPUS:-none}', proxy CPU cap: $cap")" \
        "$d/raw.csv" > /dev/null
    cat "$d/summary.md"
    log "scale results: $d"
}

case $MODE in
    compare) mode_compare ;;
    idle) mode_idle ;;
    scale) mode_scale ;;
    all) mode_compare; mode_idle; mode_scale ;;
esac
log "done: $OUT"
