# Sourced by the load-test scripts: the processes a script starts, stopped on exit (kindly,
# then for good: a gateway under valgrind takes a moment to exit), waiting for a port, and
# installing a missing tool. Expects `work` (a temporary directory, removed on exit); callers append the pid
# of each process they start to `pids`.
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Waits up to a minute for process $2 to listen on 127.0.0.1:$1, giving up at once if it
# exits; on failure shows the logs named after the pid (they are in $work, which goes on
# exit).
wait_port() {
    local port=$1 pid=$2 why
    shift 2
    why="nothing listens on port $port after a minute"
    for _ in $(seq 600); do
        if ! kill -0 "$pid" 2>/dev/null; then
            why="process $pid exited before listening on port $port"
            break
        fi
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$why" >&2
    for log in "$@"; do echo "== $log" >&2; tail -n 20 "$log" >&2; done
    return 1
}

# Starts, all on CPU 0 and each logging into $work: the built-in backend ($1 is the load
# generator's binary) on 127.0.0.1:$4, the gateway binary $2 from the deployment $3
# (listening on 127.0.0.1:$5, as its gateway.toml says) and a bare hop on 127.0.0.1:$6 in
# front of the backend. Waits for all three and sets backend_pid, gateway_pid, hop_pid.
start_backend_gateway_hop() {
    local lt=$1 gw=$2 deployment=$3 bport=$4 gport=$5 hport=$6
    taskset -c 0 "$lt" backend --listen "127.0.0.1:$bport" --deployment "$deployment" 2>"$work/backend.log" &
    backend_pid=$!
    pids+=("$backend_pid")
    (cd "$deployment" && exec taskset -c 0 "$gw" serve --config gateway.toml) 2>"$work/gateway.log" &
    gateway_pid=$!
    pids+=("$gateway_pid")
    taskset -c 0 "$lt" hop --listen "127.0.0.1:$hport" --upstream "127.0.0.1:$bport" 2>"$work/hop.log" &
    hop_pid=$!
    pids+=("$hop_pid")
    wait_port "$bport" "$backend_pid" "$work/backend.log"
    wait_port "$gport" "$gateway_pid" "$work/gateway.log"
    wait_port "$hport" "$hop_pid" "$work/hop.log"
}

# Installs the first of the Debian packages "$@" that apt-get can install, refreshing the
# package lists once if none can be as they are; with sudo unless run as root.
apt_install() {
    local sudo="" p
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    for p in "$@"; do
        $sudo apt-get install -y "$p" >/dev/null 2>&1 && return 0
    done
    $sudo apt-get update >/dev/null 2>&1 || true
    for p in "$@"; do
        $sudo apt-get install -y "$p" >/dev/null && return 0
    done
    echo "could not install any of: $* (apt-get)" >&2
    return 1
}
