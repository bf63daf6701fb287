#!/usr/bin/env bash
# Two builds of the gateway, A and B, measured against each other in one run: both serve at
# the same time from their own deployments in front of one built-in backend (gateways and
# backend on CPU 0, the generator on CPU 1), and short open-loop runs alternate between
# them (A B, B A, A B, ...) so that the host's drift falls on both alike. Prints every run
# and the median p50, p90 and p99 of each build.
#
# The two processes differ even when they are the same build: run as A and B, one binary
# gave B a median p50 1.5-9.5 us lower (four runs, BENCHMARKS.md). Run each comparison
# twice, the builds swapped, and take half the difference: that resolves about +-3 us.
#
#   loadtest/ab-gateways.sh OLD_BINARY NEW_BINARY
#   RATE=10000 DUR=5s ROUNDS=12 loadtest/ab-gateways.sh a/portcullis b/portcullis
#
# The backend and the generator are this checkout's release build.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -eq 2 ] || { echo "usage: $0 GATEWAY_BINARY_A GATEWAY_BINARY_B" >&2; exit 2; }
GA=$(realpath "$1")
GB=$(realpath "$2")
for g in "$GA" "$GB"; do [ -x "$g" ] || { echo "not an executable: $g" >&2; exit 2; }; done
RATE=${RATE:-5000}
DUR=${DUR:-3s}
ROUNDS=${ROUNDS:-8}
CONNS=${CONNS:-16}
BP=${BACKEND_PORT:-28280}
[ "$(nproc)" -ge 2 ] || { echo "needs two CPUs (servers on CPU 0, generator on CPU 1)" >&2; exit 1; }

cargo build --release --locked -p portcullis-loadtest >&2
lt=target/release/portcullis-loadtest
work=$(mktemp -d)
. loadtest/processes.sh

"$lt" setup --out "$work/A" --backend "127.0.0.1:$BP" --listen 127.0.0.1:$((BP + 1)) \
    --admin-listen 127.0.0.1:$((BP + 2)) >/dev/null
# B is A's deployment (same issuer, same vault: the backend checks A's credentials) on
# other ports, with its own audit trail.
cp -r "$work/A" "$work/B"
rm -rf "$work/B/audit"
sed -i -e "s/^listen = \"127.0.0.1:$((BP + 1))\"/listen = \"127.0.0.1:$((BP + 3))\"/" \
    -e "s/^listen = \"127.0.0.1:$((BP + 2))\"/listen = \"127.0.0.1:$((BP + 4))\"/" "$work/B/gateway.toml"
grep -q "127.0.0.1:$((BP + 3))" "$work/B/gateway.toml" || { echo "could not move B to its own port" >&2; exit 1; }
taskset -c 0 "$lt" backend --listen "127.0.0.1:$BP" --deployment "$work/A" 2>"$work/backend.log" &
pids+=($!)
wait_port "$BP" $! "$work/backend.log"
(cd "$work/A" && exec taskset -c 0 "$GA" serve --config gateway.toml) 2>"$work/A.log" &
pids+=($!)
wait_port $((BP + 1)) $! "$work/A.log"
(cd "$work/B" && exec taskset -c 0 "$GB" serve --config gateway.toml) 2>"$work/B.log" &
pids+=($!)
wait_port $((BP + 3)) $! "$work/B.log"

port() { if [ "$1" = A ]; then echo $((BP + 1)); else echo $((BP + 3)); fi; }
# Warm-up: every envelope verified once and cached, upstream connections pooled.
for g in A B; do
    "$lt" run --target "127.0.0.1:$(port $g)" --workload allowed --deployment "$work/$g" \
        --requests 20000 --connections 4 --cpus 1 --quiet >/dev/null
done
: >"$work/runs.txt"
echo "build  p50 µs  p90 µs  p99 µs   ($RATE/s, $DUR, $CONNS connections per run)"
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order="A B"; else order="B A"; fi
    for g in $order; do
        line=$("$lt" run --target "127.0.0.1:$(port $g)" --workload allowed --deployment "$work/$g" \
            --rate "$RATE" --duration "$DUR" --connections "$CONNS" --cpus 1 --quiet 2>&1 |
            grep -E '^target +[0-9]' | awk '{print $3, $4, $5}')
        if [ -z "$line" ]; then
            echo "the run against $g failed; its gateway's log:" >&2
            tail -n 20 "$work/$g.log" >&2
            exit 1
        fi
        echo "$g $line" | tee -a "$work/runs.txt" | awk '{printf "%-5s %7s %7s %7s\n", $1, $2, $3, $4}'
    done
done
median() { sort -n | awk '{a[NR] = $1} END {printf "%7.1f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
for g in A B; do
    printf "median %s:" "$g"
    for c in 2 3 4; do awk -v g="$g" -v c="$c" '$1 == g {print $c}' "$work/runs.txt" | median; done
    echo
done
