#!/usr/bin/env bash
# Instructions per proxied call, counted by valgrind's callgrind: unlike wall-clock
# figures on a shared 2-core machine, these repeat exactly for the same binary and inputs.
#
# The gateway runs as its own process (`portcullis serve`, one worker, from a
# `portcullis-loadtest setup` deployment) under callgrind, in front of the built-in
# backend run natively. After a warm-up (envelopes verified and cached, upstream
# connections pooled) the counters are zeroed, exactly N calls are sent over one
# keep-alive connection, and the counters are dumped: instructions / N is the gateway's
# user-space cost of one call, every thread included (worker, audit writer). The
# backend is measured the same way, as the cost of a minimal monoio HTTP server, and so
# is the bare monoio hop (`portcullis-loadtest hop`), the floor for any proxy on this
# runtime. All run on the epoll driver: valgrind 3.19 cannot follow io_uring (a worker on it
# never sees its completions), so these count the legacy driver's user-space path.
#
#   loadtest/instructions.sh                # 20000 calls per measurement
#   N=50000 WORKLOAD=fleet loadtest/instructions.sh
#   KEEP_DUMPS=/tmp/cg loadtest/instructions.sh   # keep the callgrind dumps for callgrind_annotate
#   GATEWAY_BIN=/path/to/portcullis loadtest/instructions.sh   # count another build of the gateway
#
# It also prints the worker's code footprint: how many distinct instructions ran in the
# measured calls, on how many 64-byte cache lines and 4-KiB pages. On a core the backend
# and the kernel share, a call fetches most of that code cold, so the footprint matters
# as much as the count.
#
# Needs valgrind (apt-get install valgrind) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-20000}
WORKLOAD=${WORKLOAD:-allowed}
BP=${BACKEND_PORT:-28180}
GP=${GATEWAY_PORT:-28181}
AP=${ADMIN_PORT:-28182}
HP=${HOP_PORT:-28183}
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed (it reads the callgrind dumps)" >&2; exit 1; }

cargo build --release --locked -p portcullis -p portcullis-loadtest >&2
bin=target/release
gw_bin=$(realpath "${GATEWAY_BIN:-$bin/portcullis}")
work=$(mktemp -d)
. loadtest/processes.sh

# Send $N calls with `run` arguments "${@:2}", the counters of the callgrind process $1
# zeroed once warmed up, dump, and print the instructions counted.
measure() {
    local pid=$1
    shift
    # Zeroed after the run's own warm-up: its envelopes are minted afresh, and their
    # first verification is not what a repeat call costs.
    "$bin/portcullis-loadtest" run --requests "$N" --connections 1 --quiet \
        --after-warmup "callgrind_control -z $pid >/dev/null" "$@" >"$work/run.txt"
    if ! grep -q " errors 0" "$work/run.txt" || grep -q UNEXPECTED "$work/run.txt"; then
        cat "$work/run.txt" >&2
        echo "the measured run had errors or unexpected answers" >&2
        exit 1
    fi
    callgrind_control -d "$pid" >/dev/null
    sleep 0.5
    # One dump file per thread (--separate-threads): name each by what it ran.
    local total=0 f ir what
    : >"$work/threads.txt"
    for f in "$work"/cg.out.*.*; do
        ir=$(grep -E '^summary:' "$f" | awk '{print $2}')
        [ "${ir:-0}" -gt 0 ] || continue
        # (With LTO the writer's loop is inlined into its thread's closure; the chain is not.)
        if grep -q 'conn::serve' "$f"; then
            what="worker thread"
            footprint "$f" >"$work/footprint-worker.txt"
        elif grep -q 'loadtest/src/hop.rs' "$f"; then
            what="hop thread"
            footprint "$f" >"$work/footprint-hop.txt"
        elif grep -qE 'audit::(writer|chain)' "$f"; then what="audit writer thread"
        else what="other threads"; fi
        echo "$what|$ir" >>"$work/threads.txt"
        total=$((total + ir))
    done
    if [ -n "${KEEP_DUMPS:-}" ]; then mkdir -p "$KEEP_DUMPS" && cp "$work"/cg.out.*.* "$KEEP_DUMPS"/; fi
    rm -f "$work"/cg.out.*.*
    echo "$total"
}

# Warms the target on port $2 up with workload $3 (envelopes verified and cached, upstream
# connections pooled), then measures $N calls of it in the callgrind process $1.
warm_and_measure() {
    "$bin/portcullis-loadtest" run --target "127.0.0.1:$2" --workload "$3" --deployment "$work/d" \
        --requests 2000 --connections 1 --quiet >/dev/null
    measure "$1" --target "127.0.0.1:$2" --workload "$3" --deployment "$work/d"
}

# Distinct instructions executed in a callgrind dump taken with --dump-instr=yes, and the
# cache lines and pages they sit on. Cost lines are "ADDR LINE IR" with ADDR absolute
# (0x...), relative (+N, -N) or unchanged (*); the line after a calls= line is the call's
# inclusive cost, not an instruction of this function.
footprint() {
    python3 - "$1" <<'PY'
import sys
ran = set()
addr = 0
after_call = False
for line in open(sys.argv[1]):
    if line.startswith("calls="):
        after_call = True
        continue
    if not line or not (line[0] in "0123456789+-*"):
        continue
    parts = line.split()
    a = parts[0]
    if a.startswith("0x"):
        addr = int(a, 16)
    elif a[0] in "+-":
        step = int(a[1:], 16) if a[1:].startswith("0x") else int(a[1:])
        addr += step if a[0] == "+" else -step
    elif a != "*":
        addr = int(a)
    if after_call:
        after_call = False
        continue
    if len(parts) >= 3 and int(parts[2]) > 0:
        ran.add(addr)
lines = {a >> 6 for a in ran}
pages = {a >> 12 for a in ran}
print(f"{len(ran)} distinct instructions on {len(lines)} cache lines ({len(lines) * 64 // 1024} KiB), {len(pages)} 4-KiB pages")
PY
}

# Instructions per call of each kind of thread in the last measurement.
threads() {
    awk -F'|' -v n="$N" '{ s[$1] += $2 } END { for (k in s) printf "    %-36s %10.0f\n", k, s[k] / n }' \
        "$work/threads.txt" | sort
}

"$bin/portcullis-loadtest" setup --out "$work/d" --backend "127.0.0.1:$BP" --driver legacy \
    --listen "127.0.0.1:$GP" --admin-listen "127.0.0.1:$AP" --cores 1 >/dev/null

# 1. The backend alone under callgrind: a direct call.
valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$work/cg.out.%p" \
    "$bin/portcullis-loadtest" backend --listen "127.0.0.1:$BP" --deployment "$work/d" --driver legacy 2>"$work/vg-backend.log" &
bpid=$!
pids+=("$bpid")
wait_port "$BP" "$bpid" "$work/vg-backend.log"
direct=$(warm_and_measure "$bpid" "$BP" direct)
kill "$bpid"; wait "$bpid" 2>/dev/null || true

# 2. The backend natively, the gateway under callgrind.
"$bin/portcullis-loadtest" backend --listen "127.0.0.1:$BP" --deployment "$work/d" 2>"$work/backend.log" &
bpid=$!
pids+=("$bpid")
(cd "$work/d" && exec valgrind --tool=callgrind --separate-threads=yes --dump-instr=yes --callgrind-out-file="$work/cg.out.%p" \
    "$gw_bin" serve --config gateway.toml) 2>"$work/vg-gateway.log" &
gpid=$!
pids+=("$gpid")
wait_port "$BP" "$bpid" "$work/backend.log"
wait_port "$GP" "$gpid" "$work/vg-gateway.log"
gateway=$(warm_and_measure "$gpid" "$GP" "$WORKLOAD")
gateway_threads=$(threads)
kill "$gpid"; wait "$gpid" 2>/dev/null || true

# 3. The bare monoio hop under callgrind in front of the native backend, sent the direct
# call: the floor for any proxy on this runtime (bytes copied both ways, no HTTP).
valgrind --tool=callgrind --separate-threads=yes --dump-instr=yes --callgrind-out-file="$work/cg.out.%p" \
    "$bin/portcullis-loadtest" hop --listen "127.0.0.1:$HP" --upstream "127.0.0.1:$BP" --driver legacy 2>"$work/vg-hop.log" &
hpid=$!
pids+=("$hpid")
wait_port "$HP" "$hpid" "$work/vg-hop.log"
hop=$(warm_and_measure "$hpid" "$HP" direct)

per() { awk -v t="$1" -v n="$N" 'BEGIN { printf "%.0f", t / n }'; }
echo "instructions per call (callgrind, $N calls after warm-up, one keep-alive connection):"
printf '  %-40s %10s\n' "backend alone (direct call)" "$(per "$direct")"
printf '  %-40s %10s\n' "bare monoio hop (direct call relayed)" "$(per "$hop")"
printf '  %-40s %10s\n' "gateway, workload '$WORKLOAD' (all threads)" "$(per "$gateway")"
echo "$gateway_threads"
echo "  worker code run in the measured calls: $(cat "$work/footprint-worker.txt")"
echo "  hop code run in the measured calls:    $(cat "$work/footprint-hop.txt")"
echo "(valgrind hides SHA-NI from ring, so the audit chain's SHA-256 runs its AVX code here: natively it costs less than these counts say)"
