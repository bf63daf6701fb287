#!/usr/bin/env bash
# Where a request's time goes between system calls, for the gateway and the bare hop: the
# user-space stretches of each server thread at an open-loop rate, read from the kernel's
# syscall tracepoints (exact timestamps, unlike the clock-tick split of cpu-split.sh).
#
# For each thread it prints, per kind of stretch (the call it leaves -> the call it enters,
# by syscall number: 426 io_uring_enter, 45 recvfrom, ...), how many there are per request,
# their median and p90 in µs, and their total per request. For the gateway, "426 -> 45" is
# the request half of a call: from the completion that delivered the request to the
# MSG_PEEK before reusing a pooled upstream connection (parse, envelope, scope, decision,
# vault). Time a thread spends switched out (the backend shares CPU 0) is left out of its
# stretches. The tracepoints cost about a microsecond each, so absolute figures are higher
# than untraced: compare the two targets within one run.
#
#   loadtest/syscall-gaps.sh                     # 5,000/s for 4 s each
#   RATE=2000 DUR=6 GATEWAY_BIN=target/pgo/release/portcullis loadtest/syscall-gaps.sh
#
# Needs perf (Debian: linux-perf), permission to trace (root, or perf_event_paranoid and
# tracefs access), and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-5000}
DUR=${DUR:-4}
BP=${BACKEND_PORT:-28580}
GP=${GATEWAY_PORT:-28581}
AP=${ADMIN_PORT:-28582}
HP=${HOP_PORT:-28583}
command -v perf >/dev/null || { echo "perf is needed (Debian: apt-get install linux-perf)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "needs two CPUs (servers on CPU 0, generator on CPU 1)" >&2; exit 1; }

cargo build --release --locked -p portcullis -p portcullis-loadtest >&2
lt=target/release/portcullis-loadtest
gw_bin=$(realpath "${GATEWAY_BIN:-target/release/portcullis}")
work=$(mktemp -d)
. loadtest/processes.sh

"$lt" setup --out "$work/d" --backend "127.0.0.1:$BP" \
    --listen "127.0.0.1:$GP" --admin-listen "127.0.0.1:$AP" --cores 1 >/dev/null
start_backend_gateway_hop "$lt" "$gw_bin" "$work/d" "$BP" "$GP" "$HP"
gpid=$gateway_pid hpid=$hop_pid
# The same kind of recording as below (all of CPU 0, tracepoints), so a refusal shows here
# and not as an empty trace.
if ! perf record -q -o "$work/probe.data" -e raw_syscalls:sys_enter -e sched:sched_switch -C 0 \
    -- sleep 0.1 >"$work/probe.log" 2>&1; then
    cat "$work/probe.log" >&2
    echo "perf cannot trace CPU 0's system calls and switches here (needs root, or kernel.perf_event_paranoid <= -1 and tracefs access)" >&2
    exit 1
fi

requests=$((RATE * DUR))
cp "$(type -P true)" "$work/gaps-marker"
for target in "gateway $GP allowed $gpid" "hop $HP direct $hpid"; do
    set -- $target
    "$lt" run --target "127.0.0.1:$2" --workload "$3" --deployment "$work/d" \
        --requests 20000 --connections 4 --cpus 1 --quiet >/dev/null
    # All of CPU 0, so that the switches back to the target's threads are seen too. The
    # run mints its envelopes afresh and warms up on them (a first verification is not
    # what a repeat call costs): a marker program run on CPU 0 once it has warmed up
    # tells the analysis where the measured part starts.
    perf record -q -o "$work/$1.data" -e raw_syscalls:sys_enter,raw_syscalls:sys_exit \
        -e sched:sched_switch -C 0 -m 256M >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.5
    "$lt" run --target "127.0.0.1:$2" --workload "$3" --deployment "$work/d" \
        --rate "$RATE" --duration "${DUR}s" --connections 16 --cpus 1 --quiet \
        --after-warmup "for i in 1 2 3; do taskset -c 0 $work/gaps-marker; done" >"$work/run.txt"
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    echo "== $1 at $RATE/s for ${DUR}s (traced): $(grep -E '^target +[0-9]' "$work/run.txt" | awk '{print "p50", $3, "µs, p99", $5, "µs"}')"
    perf script -i "$work/$1.data" -F comm,pid,tid,time,event,trace --show-lost-events 2>/dev/null >"$work/$1.txt"
    python3 - "$work/$1.txt" "$requests" "$4" <<'PY'
import collections, re, sys
path, requests, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
left = {}
gaps = collections.defaultdict(list)
# Time each thread spent switched out, so a stretch counts only its own running time.
off = collections.Counter()
off_since = {}
line_re = re.compile(r"\s*(\S+)\s+(\d+)/(\d+)\s+([\d.]+):\s+(\S+): (.*)")
names = {}
lost = 0
measuring = False
for line in open(path):
    if "LOST" in line:
        lost += int(re.search(r"LOST (\d+)", line).group(1)) if re.search(r"LOST (\d+)", line) else 1
        continue
    m = line_re.match(line)
    if not m:
        continue
    comm, p, tid, t, event, rest = m.group(1), m.group(2), m.group(3), float(m.group(4)) * 1e6, m.group(5), m.group(6)
    if not measuring:
        measuring = "gaps-marker" in line
        continue
    if event == "sched:sched_switch":
        prev = re.search(r"prev_pid=(\d+)", rest).group(1)
        nxt = re.search(r"next_pid=(\d+)", rest).group(1)
        off_since[prev] = t
        if nxt in off_since:
            off[nxt] += t - off_since.pop(nxt)
        continue
    if p != pid:
        continue
    names[tid] = comm
    nr = int(re.match(r"NR (-?\d+)", rest).group(1))
    if event == "raw_syscalls:sys_exit":
        left[tid] = (t, nr, off[tid])
    elif tid in left:
        t0, nr0, off0 = left.pop(tid)
        gaps[(tid, nr0, nr)].append(t - t0 - (off[tid] - off0))
if not measuring:
    print(f"  the trace never shows the marker run after the warm-up (perf lost {lost} events): run again")
    sys.exit(0)
total = collections.Counter()
rows = []
for (tid, a, b), v in gaps.items():
    v.sort()
    total[tid] += sum(v)
    rows.append((sum(v), tid, a, b, v))
for s, tid, a, b, v in sorted(rows, reverse=True):
    if s / requests < 0.2:
        continue
    print(f"  {names[tid]:<16} {a:>4} -> {b:<4} {len(v) / requests:5.2f}/req  median {v[len(v) // 2]:6.1f} µs  "
          f"p90 {v[int(len(v) * 0.9)]:6.1f} µs  total {s / requests:6.1f} µs/req")
if lost:
    print(f"  (perf lost {lost} events: the counts above are short; raise -m)")
for tid, s in total.most_common():
    if s / requests >= 0.2:
        print(f"  {names[tid]:<16} user space in all: {s / requests:.1f} µs/req")
PY
done
