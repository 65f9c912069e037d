#!/usr/bin/env bash
# A real Dockyard cluster on this machine, all on loopback: one etcd, an S3 server
# (s3s-fs), two coordinators (one leads, the other stands by) and N agents.
#
#   cluster.sh start  [--agents N] [--dir DIR] [--sleep-engine] [--base-port P] [--slots N]
#   cluster.sh stop   [--dir DIR] [--timeout S]
#   cluster.sh status [--dir DIR]
#
# Binaries come from ${DOCKYARD_BIN_DIR:-<repo>/target/debug} (cargo build --workspace);
# etcd (Debian etcd-server) and s3s-fs (cargo install s3s-fs --features binary) from PATH or
# ~/.cargo/bin. Ports: etcd P (peer P+1), S3 P+2, coordinators P+3 and P+4.
# DIR defaults to ${DOCKYARD_LOCAL_DIR:-<repo>/.dockyard/local}; every process runs in its
# own session, with its pid in DIR/pids and its log in DIR/logs.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR=${DOCKYARD_BIN_DIR:-$REPO/target/debug}
CLUSTER_NAME=local
BUCKET=dockyard
# Loopback-only test keys: s3s-fs checks SigV4 with them, nothing else uses them.
S3_ACCESS_KEY=dockyard-local
S3_SECRET_KEY=dockyard-local-secret
S3_REGION=us-east-1

DIR=${DOCKYARD_LOCAL_DIR:-$REPO/.dockyard/local}
AGENTS=2
SLEEP_ENGINE=0
BASE_PORT=47100
SLOTS=
STOP_TIMEOUT=30

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

usage() {
    sed -n '2,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

# ----- arguments -----

CMD=${1:-}
case $CMD in
    start | stop | status) shift ;;
    "" | -h | --help | help) usage ;;
    *) die "unknown command '$CMD' (start, stop or status)" ;;
esac
while (($#)); do
    case $1 in
        --agents) AGENTS=${2:?--agents needs a number}; shift 2 ;;
        --dir) DIR=${2:?--dir needs a folder}; shift 2 ;;
        --sleep-engine) SLEEP_ENGINE=1; shift ;;
        --base-port) BASE_PORT=${2:?--base-port needs a port}; shift 2 ;;
        --slots) SLOTS=${2:?--slots needs a number}; shift 2 ;;
        --timeout) STOP_TIMEOUT=${2:?--timeout needs seconds}; shift 2 ;;
        -h | --help) usage ;;
        *) die "unknown option '$1' (try --help)" ;;
    esac
done
[[ $AGENTS =~ ^[0-9]+$ ]] || die "--agents must be a number, not '$AGENTS'"
if ! [[ $BASE_PORT =~ ^[0-9]+$ ]] || ((BASE_PORT < 1 || BASE_PORT > 65530)); then
    die "--base-port must be 1-65530"
fi
[[ -z $SLOTS || $SLOTS =~ ^[0-9]+$ ]] || die "--slots must be a number"
[[ $STOP_TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout must be seconds"
if [[ $CMD == start ]]; then mkdir -p "$DIR"; fi
[[ -d $DIR ]] || die "no cluster folder $DIR"
DIR=$(cd "$DIR" && pwd)

# ----- helpers -----

# Finds a server binary on PATH or in ~/.cargo/bin.
find_tool() {
    local name=$1
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
    elif [[ -x $HOME/.cargo/bin/$name ]]; then
        printf '%s\n' "$HOME/.cargo/bin/$name"
    else
        return 1
    fi
}

pid_of() { cat "$DIR/pids/$1.pid" 2>/dev/null || true; }

# Is NAME's recorded process alive and still ours? A zombie or a reused pid has no
# command line mentioning DIR.
alive() {
    local pid
    local pid cmdline
    pid=$(pid_of "$1")
    [[ -n $pid ]] || return 1
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    [[ $cmdline == *"$DIR"* ]]
}

# Every name that has a pid file, in start order (etcd, s3s-fs, coordinators, agents).
started_names() {
    local n
    for n in etcd s3s-fs coordinator-1 coordinator-2; do
        if [[ -e $DIR/pids/$n.pid ]]; then printf '%s\n' "$n"; fi
    done
    if [[ -d $DIR/pids ]]; then
        find "$DIR/pids" -maxdepth 1 -name 'local-agent-*.pid' | sed 's#.*/##; s#\.pid$##' | sort -t- -k3n
    fi
}

# spawn NAME CMD...: runs CMD in a session of its own (so stop can also end whatever it
# spawned), output to logs/NAME.log, pid to pids/NAME.pid.
spawn() {
    local name=$1 i
    shift
    local pidfile=$DIR/pids/$name.pid logfile=$DIR/logs/$name.log
    rm -f "$pidfile"
    # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >>"$logfile" 2>&1 </dev/null &
    for ((i = 0; i < 100; i++)); do
        [[ -s $pidfile ]] && return 0
        sleep 0.05
    done
    fail "$name did not start"
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints the end of every log, stops what was started, exits 1.
fail() {
    log "error: $*"
    local f
    for f in "$DIR"/logs/*.log; do
        [[ -s $f ]] || continue
        printf '\n----- last 15 lines of %s -----\n' "$f" >&2
        tail -n 15 "$f" >&2
    done
    log "stopping what was started; logs stay in $DIR/logs"
    stop_all >&2 || true
    exit 1
}

wait_listen() {
    local name=$1 port=$2 deadline=$((SECONDS + 30))
    until listening "$port"; do
        alive "$name" || fail "$name exited before listening on 127.0.0.1:$port"
        ((SECONDS < deadline)) || fail "$name did not listen on 127.0.0.1:$port within 30 s"
        sleep 0.1
    done
}

# grpc.health.v1 Check of SERVICE on 127.0.0.1:PORT; prints SERVING, NOT_SERVING, UNKNOWN
# (e.g. a service not registered yet) or DOWN. curl speaks gRPC well enough for this one
# call (HTTP/2 without TLS, one length-prefixed protobuf message); grpcurl is the fallback.
health() {
    local port=$1 service=$2 n=${#2} hex fmt
    if command -v curl >/dev/null 2>&1; then
        listening "$port" || { echo DOWN; return; }
        # Frame: no compression, 4-byte length, then field 1 (service) as a string.
        if ((n == 0)); then
            fmt='\x00\x00\x00\x00\x00'
        else
            fmt=$(printf '\\x00\\x00\\x00\\x00\\x%02x\\x0a\\x%02x%s' $((n + 2)) "$n" "$service")
        fi
        # shellcheck disable=SC2059 # the format is the frame built above
        hex=$(printf "$fmt" | curl -s --http2-prior-knowledge --max-time 3 \
            -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @- \
            "http://127.0.0.1:$port/grpc.health.v1.Health/Check" | od -An -tx1 | tr -d ' \n') || true
        case $hex in
            00000000020801) echo SERVING ;;
            00000000020802) echo NOT_SERVING ;;
            *) echo UNKNOWN ;;
        esac
    else
        local out
        out=$(grpcurl -plaintext -max-time 3 -d "{\"service\":\"$service\"}" "127.0.0.1:$port" grpc.health.v1.Health/Check 2>&1) || true
        case $out in
            *'"NOT_SERVING"'*) echo NOT_SERVING ;;
            *'"SERVING"'*) echo SERVING ;;
            *'connection refused'* | *'Failed to dial'*) echo DOWN ;;
            *) echo UNKNOWN ;;
        esac
    fi
}

# Only the leader reports dockyard.v1.JobService SERVING.
leader_port() {
    local p
    for p in "$COORD1_PORT" "$COORD2_PORT"; do
        if [[ $(health "$p" dockyard.v1.JobService) == SERVING ]]; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# The dockyard CLI against this cluster: every coordinator with --coordinator (the CLI
# follows the leader); a CLI without that flag gets the leader's --endpoint.
CLI_HELP=
cli() {
    [[ -n $CLI_HELP ]] || CLI_HELP=$("$BIN_DIR/dockyard" --help 2>&1 || true)
    if [[ $CLI_HELP == *--coordinator* ]]; then
        "$BIN_DIR/dockyard" --coordinator "$COORDINATORS" "$@"
    else
        local p
        p=$(leader_port) || { log "no coordinator leads"; return 1; }
        "$BIN_DIR/dockyard" --endpoint "http://127.0.0.1:$p" "$@"
    fi
}

set_ports() {
    ETCD_PORT=$BASE_PORT
    ETCD_PEER_PORT=$((BASE_PORT + 1))
    S3_PORT=$((BASE_PORT + 2))
    COORD1_PORT=$((BASE_PORT + 3))
    COORD2_PORT=$((BASE_PORT + 4))
    ETCD_URL=http://127.0.0.1:$ETCD_PORT
    S3_ENDPOINT=http://127.0.0.1:$S3_PORT
    ARTIFACTS="s3://$BUCKET/local?endpoint=$S3_ENDPOINT&path_style=true"
    COORDINATORS=http://127.0.0.1:$COORD1_PORT,http://127.0.0.1:$COORD2_PORT
}

# stop and status read the ports start used.
load_state() {
    [[ -f $DIR/cluster.env ]] || return 1
    BASE_PORT=$(sed -n 's/^BASE_PORT=//p' "$DIR/cluster.env")
    [[ $BASE_PORT =~ ^[0-9]+$ ]] || die "$DIR/cluster.env has no BASE_PORT"
    set_ports
}

# ----- stop -----

# SIGTERM to each named process, wait up to STOP_TIMEOUT, then SIGKILL its whole session
# (stragglers and any children left behind).
stop_group() {
    local name pid deadline=$((SECONDS + STOP_TIMEOUT)) left was_running=" "
    for name in "$@"; do
        if alive "$name"; then
            was_running+="$name "
            kill -TERM "$(pid_of "$name")" 2>/dev/null || true
        fi
    done
    while :; do
        left=()
        for name in "$@"; do
            if alive "$name"; then left+=("$name"); fi
        done
        ((${#left[@]} == 0 || SECONDS >= deadline)) && break
        sleep 0.1
    done
    for name in "$@"; do
        pid=$(pid_of "$name")
        [[ -n $pid ]] || continue
        if alive "$name"; then
            log "$name (pid $pid) still running after ${STOP_TIMEOUT} s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        elif [[ $was_running == *" $name "* ]]; then
            log "stopped $name (pid $pid)"
        else
            log "$name (pid $pid) was not running"
        fi
        # The session leader's pid is its process group: anything it left behind.
        kill -KILL -- "-$pid" 2>/dev/null || true
        rm -f "$DIR/pids/$name.pid"
    done
}

stop_all() {
    local names agents=() coords=() servers=() n
    mapfile -t names < <(started_names)
    for n in "${names[@]}"; do
        case $n in
            local-agent-*) agents+=("$n") ;;
            coordinator-*) coords+=("$n") ;;
            *) servers+=("$n") ;;
        esac
    done
    # Agents first so they hand their tasks back to a live leader; etcd last so the
    # coordinators can give up leadership cleanly.
    ((${#agents[@]} == 0)) || stop_group "${agents[@]}"
    ((${#coords[@]} == 0)) || stop_group "${coords[@]}"
    if [[ " ${servers[*]} " == *' s3s-fs '* ]]; then stop_group s3s-fs; fi
    if [[ " ${servers[*]} " == *' etcd '* ]]; then stop_group etcd; fi
}

cmd_stop() {
    if [[ -z $(started_names) ]]; then
        log "nothing to stop in $DIR"
        return 0
    fi
    stop_all
    log "stopped; data and logs stay in $DIR"
}

# ----- start -----

cmd_start() {
    local missing=() b etcd_bin s3_bin i
    for b in dockyard-coordinator dockyard-agent dockyard; do
        [[ -x $BIN_DIR/$b ]] || missing+=("$BIN_DIR/$b (run: cargo build --workspace, or set DOCKYARD_BIN_DIR)")
    done
    etcd_bin=$(find_tool etcd) || missing+=("etcd (Debian: apt-get install etcd-server)")
    s3_bin=$(find_tool s3s-fs) || missing+=("s3s-fs (cargo install s3s-fs@0.14.1 --features binary --locked)")
    command -v setsid >/dev/null 2>&1 || missing+=("setsid (Debian: util-linux)")
    command -v curl >/dev/null 2>&1 || command -v grpcurl >/dev/null 2>&1 ||
        missing+=("curl or grpcurl (health checks)")
    if ((${#missing[@]})); then
        log "missing:"
        printf '  %s\n' "${missing[@]}" >&2
        exit 1
    fi
    mkdir -p "$DIR/pids" "$DIR/logs"
    local n
    for n in $(started_names); do
        if alive "$n"; then
            die "$n is already running from $DIR (pid $(pid_of "$n")); run: $0 stop --dir $DIR"
        fi
    done
    rm -f "$DIR"/pids/*.pid
    set_ports
    local p
    for p in "$ETCD_PORT" "$ETCD_PEER_PORT" "$S3_PORT" "$COORD1_PORT" "$COORD2_PORT"; do
        if listening "$p"; then die "port $p is in use; pick other ports with --base-port"; fi
    done
    printf 'BASE_PORT=%s\nAGENTS=%s\n' "$BASE_PORT" "$AGENTS" >"$DIR/cluster.env"
    printf 'export DOCKYARD_COORDINATOR=%s\nexport DOCKYARD_ENDPOINT=%s\n' "$COORDINATORS" "$COORDINATORS" >"$DIR/client.env"

    # Settings the caller exported (e.g. DOCKYARD_COORDINATOR from an earlier run) must not
    # leak into the servers: everything is given as flags.
    local v
    for v in $(compgen -e); do
        if [[ $v == DOCKYARD_* ]]; then unset "$v"; fi
    done
    unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
    export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
    export AWS_REGION=$S3_REGION AWS_EC2_METADATA_DISABLED=true NO_COLOR=1

    log "starting etcd on $ETCD_URL"
    spawn etcd "$etcd_bin" --name local --data-dir "$DIR/etcd-data" \
        --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" --logger zap --log-level warn
    wait_listen etcd "$ETCD_PORT"

    log "starting s3s-fs on $S3_ENDPOINT (bucket $BUCKET)"
    mkdir -p "$DIR/s3/$BUCKET" # s3s-fs: a bucket is a folder under its root
    spawn s3s-fs "$s3_bin" --host 127.0.0.1 --port "$S3_PORT" \
        --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$DIR/s3"
    wait_listen s3s-fs "$S3_PORT"

    for i in 1 2; do
        p=$((BASE_PORT + 2 + i))
        log "starting coordinator-$i on http://127.0.0.1:$p"
        spawn "coordinator-$i" "$BIN_DIR/dockyard-coordinator" \
            --listen "127.0.0.1:$p" --data-dir "$DIR/coordinator-$i" \
            --etcd "$ETCD_URL" --cluster "$CLUSTER_NAME" --advertise "http://127.0.0.1:$p" \
            --artifacts "$ARTIFACTS"
    done
    wait_listen coordinator-1 "$COORD1_PORT"
    wait_listen coordinator-2 "$COORD2_PORT"
    local deadline=$((SECONDS + 60)) leader
    until leader=$(leader_port); do
        alive coordinator-1 || fail "coordinator-1 exited"
        alive coordinator-2 || fail "coordinator-2 exited"
        ((SECONDS < deadline)) || fail "no coordinator became leader within 60 s"
        sleep 0.2
    done
    log "leader: http://127.0.0.1:$leader"

    local extra=()
    if ((SLEEP_ENGINE)); then extra+=(--enable-sleep-engine); fi
    if [[ -n $SLOTS ]]; then extra+=(--slots "$SLOTS"); fi
    for ((i = 1; i <= AGENTS; i++)); do
        log "starting local-agent-$i"
        spawn "local-agent-$i" "$BIN_DIR/dockyard-agent" \
            --etcd "$ETCD_URL" --cluster "$CLUSTER_NAME" --node-id "local-agent-$i" \
            --work-dir "$DIR/agent-$i" --artifacts "$ARTIFACTS" "${extra[@]}"
    done
    if ((AGENTS > 0)); then
        local ready=0
        deadline=$((SECONDS + 60))
        while :; do
            for ((i = 1; i <= AGENTS; i++)); do
                alive "local-agent-$i" || fail "local-agent-$i exited"
            done
            ready=$(cli nodes --format csv 2>/dev/null | awk -F, '$1 ~ /^local-agent-/ && $2 == "ready"' | wc -l) || ready=0
            ((ready >= AGENTS)) && break
            ((SECONDS < deadline)) || fail "$ready of $AGENTS agents registered within 60 s"
            sleep 0.3
        done
    fi

    log "cluster '$CLUSTER_NAME' is up: $AGENTS agent(s); logs in $DIR/logs; stop with: $0 stop --dir $DIR"
    # The CLI reads DOCKYARD_ENDPOINT (or --coordinator); both name every coordinator.
    printf '%s\n' "export DOCKYARD_COORDINATOR=$COORDINATORS" "export DOCKYARD_ENDPOINT=$COORDINATORS"
    printf '%s\n' "# etcd: $ETCD_URL  S3: $S3_ENDPOINT (bucket $BUCKET)  logs: $DIR/logs"
    printf '%s\n' "# then: $BIN_DIR/dockyard --coordinator \$DOCKYARD_COORDINATOR nodes"
}

# ----- status -----

cmd_status() {
    load_state || die "no cluster was started in $DIR"
    local n pid state all=0 leaders=0 where role
    printf '%-16s %-8s %-8s %s\n' NAME PID STATE ADDRESS
    for n in etcd s3s-fs coordinator-1 coordinator-2; do
        role=
        case $n in
            etcd) where=$ETCD_URL ;;
            s3s-fs) where=$S3_ENDPOINT ;;
            coordinator-1) where=http://127.0.0.1:$COORD1_PORT ;;
            coordinator-2) where=http://127.0.0.1:$COORD2_PORT ;;
        esac
        pid=$(pid_of "$n")
        if alive "$n"; then state=running; else state=stopped; all=1; fi
        if [[ $n == coordinator-* && $state == running ]]; then
            case $(health "${where##*:}" dockyard.v1.JobService) in
                SERVING) role=leader; leaders=$((leaders + 1)) ;;
                DOWN) role='(not listening)' ;;
                *) role=standby ;;
            esac
        fi
        printf '%-16s %-8s %-8s %s %s\n' "$n" "${pid:--}" "$state" "$where" "$role"
    done
    for n in $(started_names); do
        [[ $n == local-agent-* ]] || continue
        if alive "$n"; then state=running; else state=stopped; all=1; fi
        printf '%-16s %-8s %-8s %s\n' "$n" "$(pid_of "$n")" "$state" "$DIR/agent-${n##*-}"
    done
    ((leaders == 1)) || { log "$leaders coordinator(s) lead (want 1)"; all=1; }
    if ((leaders)); then
        echo
        cli nodes || all=1
    fi
    echo
    echo "export DOCKYARD_COORDINATOR=$COORDINATORS DOCKYARD_ENDPOINT=$COORDINATORS"
    return "$all"
}

case $CMD in
    start) cmd_start ;;
    stop)
        if load_state; then :; fi
        cmd_stop
        ;;
    status) cmd_status ;;
esac
