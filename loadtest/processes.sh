# Sourced by the load-test scripts: the processes a script starts, stopped on exit (kindly,
# then for good: a gateway under valgrind takes a moment to exit), and waiting for a
# port. Expects `work` (a temporary directory, removed on exit); callers append the pid
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

# Waits up to a minute for something to listen on 127.0.0.1:$1; on failure shows the
# logs named after the port (they are in $work, which goes on exit).
wait_port() {
    local port=$1
    shift
    for _ in $(seq 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $port" >&2
    for log in "$@"; do echo "== $log" >&2; tail -n 20 "$log" >&2; done
    return 1
}
