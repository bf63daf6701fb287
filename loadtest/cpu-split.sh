#!/usr/bin/env bash
# Where each server thread's CPU goes, user space against kernel, per request: the
# gateway (`portcullis serve`, one worker) and the bare monoio hop in front of the
# built-in backend, all on CPU 0, the generator on CPU 1. Open loop at RATE for DUR
# seconds per target, ROUNDS rounds; user and system time come from
# /proc/<pid>/task/<tid>/stat (clock ticks, so keep runs at several seconds).
#
#   loadtest/cpu-split.sh
#   RATE=2000 DUR=10 ROUNDS=3 loadtest/cpu-split.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-5000}
DUR=${DUR:-6}
ROUNDS=${ROUNDS:-2}
BP=${BACKEND_PORT:-28380}
[ "$(nproc)" -ge 2 ] || { echo "needs two CPUs (servers on CPU 0, generator on CPU 1)" >&2; exit 1; }

cargo build --release --locked -p portcullis -p portcullis-loadtest >&2
bin=$PWD/target/release
work=$(mktemp -d)
. loadtest/processes.sh

GP=$((BP + 1)) HP=$((BP + 3))
"$bin/portcullis-loadtest" setup --out "$work/d" --backend "127.0.0.1:$BP" --listen "127.0.0.1:$GP" \
    --admin-listen "127.0.0.1:$((BP + 2))" >/dev/null
start_backend_gateway_hop "$bin/portcullis-loadtest" "$(realpath "$bin/portcullis")" "$work/d" "$BP" "$GP" "$HP"
bp=$backend_pid gp=$gateway_pid hp=$hop_pid

# name utime stime, for every thread of the three servers
snapshot() {
    for t in /proc/"$gp"/task/* /proc/"$hp"/task/* /proc/"$bp"/task/*; do
        # comm may hold spaces; the two times are fields 14 and 15 after it.
        echo "$(tr -d ' ' <"$t/comm") $(sed 's/.*) //' "$t/stat" | awk '{print $12, $13}')"
    done
}
tick_us=$((1000000 / $(getconf CLK_TCK)))
n=$((RATE * DUR))
echo "per request at $RATE/s (${DUR}s, 16 connections): user and system µs of each busy thread"
for r in $(seq "$ROUNDS"); do
    for t in "$GP allowed gateway" "$HP direct hop"; do
        set -- $t
        "$bin/portcullis-loadtest" run --target "127.0.0.1:$1" --workload "$2" --deployment "$work/d" \
            --requests 20000 --connections 4 --cpus 1 --quiet >/dev/null 2>&1
        snapshot >"$work/s0"
        p50=$("$bin/portcullis-loadtest" run --target "127.0.0.1:$1" --workload "$2" --deployment "$work/d" \
            --rate "$RATE" --duration "${DUR}s" --connections 16 --cpus 1 --quiet 2>&1 |
            grep -E '^target +[0-9]' | awk '{print $3}')
        snapshot >"$work/s1"
        printf "round %s %-8s p50 %6s µs: " "$r" "$3" "${p50:-?}"
        paste "$work/s0" "$work/s1" | awk -v n="$n" -v tick="$tick_us" '{
            u = ($5 - $2) * tick / n; s = ($6 - $3) * tick / n
            if (u + s > 0.5) printf "%s user %.1f sys %.1f | ", $1, u, s }'
        echo
    done
done
