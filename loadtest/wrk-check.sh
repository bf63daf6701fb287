#!/usr/bin/env bash
# The load generator checked against an independent one. wrk (closed loop, HTTP/1.1
# keep-alive, its own parser and timers) and `portcullis-loadtest run --closed` send the
# same requests over the same number of connections from one thread on CPU 1, in
# alternating rounds, to a gateway run as its own process, to a bare hop and to the
# built-in backend straight (all on CPU 0). If the two disagree on throughput or latency,
# one of them is measuring itself; the last lines say by how much.
#
#   loadtest/wrk-check.sh                     # 3 rounds of 10 s per generator and target
#   ROUNDS=5 DUR=5 CONNS=32 loadtest/wrk-check.sh
#   GATEWAY_BIN=target/pgo/release/portcullis loadtest/wrk-check.sh
#
# Installs wrk with apt-get if it is missing. wrk has no open-loop mode (that is wrk2), so
# this checks the closed loop; the open loop's schedule is checked by the loadtest crate's
# own tests.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10}
CONNS=${CONNS:-16}
BP=${BACKEND_PORT:-28380}
[ "$(nproc)" -ge 2 ] || { echo "needs two CPUs (servers on CPU 0, generators on CPU 1)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed (it reads the credentials file)" >&2; exit 1; }
work=$(mktemp -d)
. loadtest/processes.sh
if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk is not installed; installing it with apt-get" >&2
    apt_install wrk
fi

cargo build --release --locked -p portcullis -p portcullis-loadtest >&2
bin=target/release
lt=$bin/portcullis-loadtest
gw_bin=$(realpath "${GATEWAY_BIN:-$bin/portcullis}")

"$lt" setup --out "$work/d" --backend "127.0.0.1:$BP" --listen "127.0.0.1:$((BP + 1))" \
    --admin-listen "127.0.0.1:$((BP + 2))" >/dev/null
start_backend_gateway_hop "$lt" "$gw_bin" "$work/d" "$BP" $((BP + 1)) $((BP + 3))

# The same calls the `allowed` and `direct` workloads send: an envelope minted with the
# deployment's issuer key from the example claims, and the backend's own credential.
token=$("$bin/portcullis" mint --key "$work/d/issuer.pem" \
    --claims policies/envelopes/renewal-review.json --ttl 2h)
credential=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["records_api"])' \
    "$work/d/backend-credentials.json")
cat >"$work/gateway.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"contract_id":"contract_7781"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
EOF
cat >"$work/direct.lua" <<EOF
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer $credential"
wrk.headers["Accept"] = "application/json"
EOF
TARGETS="gateway hop direct"
port() {
    case $1 in
        gateway) echo $((BP + 1)) ;;
        hop) echo $((BP + 3)) ;;
        *) echo "$BP" ;;
    esac
}
url() {
    if [ "$1" = gateway ]; then
        echo "http://127.0.0.1:$(port gateway)/v1/tools/contracts.read"
    else
        echo "http://127.0.0.1:$(port "$1")/contracts/contract_7781"
    fi
}
# The hop forwards the backend's own request.
script() { if [ "$1" = gateway ]; then echo "$work/gateway.lua"; else echo "$work/direct.lua"; fi; }
ours() {
    local target=$1
    shift
    if [ "$target" = gateway ]; then
        "$lt" run --target "127.0.0.1:$(port gateway)" --workload allowed --deployment "$work/d" \
            --envelopes 1 --cpus 1 --quiet "$@"
    else
        "$lt" run --target "127.0.0.1:$(port "$target")" --workload direct \
            --credential "$credential" --cpus 1 --quiet "$@"
    fi
}

# A probe of each: a refused envelope or credential would make every figure meaningless.
# Stops the script with what a generator printed, when it failed or printed no figures.
failed() {
    echo "$1 against the $2:" >&2
    echo "$3" >&2
    exit 1
}
for t in $TARGETS; do
    s=$(taskset -c 1 wrk -t1 -c1 -d1s -s "$(script "$t")" "$(url "$t")" 2>&1) \
        || failed "wrk failed" "$t" "$s"
    if grep -q "Non-2xx" <<<"$s" || ! grep -q "Requests/sec" <<<"$s"; then
        failed "wrk's calls were not answered 2xx" "$t" "$s"
    fi
    s=$(ours "$t" --requests 20000 --connections 4 --closed 2>&1) \
        || failed "portcullis-loadtest failed" "$t" "$s"
done

# wrk prints 695.00us, 1.45ms or 1.02s; in µs.
wrk_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n }'
}
measure() {
    local gen=$1 t=$2 out
    if [ "$gen" = wrk ]; then
        out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -s "$(script "$t")" "$(url "$t")" 2>&1) \
            || failed "wrk failed" "$t" "$out"
        grep -q "Non-2xx\|Socket errors" <<<"$out" && failed "wrk saw errors" "$t" "$out"
        local rps p50 p90 p99
        rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
        p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
        p90=$(awk '$1 == "90%" { print $2 }' <<<"$out")
        p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
        [ -n "$rps" ] && [ -n "$p99" ] || failed "wrk printed no figures" "$t" "$out"
        echo "$t wrk $rps $(wrk_us "$p50") $(wrk_us "$p90") $(wrk_us "$p99")"
    else
        out=$(ours "$t" --closed --duration "${DUR}s" --connections "$CONNS" 2>&1) \
            || failed "portcullis-loadtest failed" "$t" "$out"
        if ! grep -q " errors 0" <<<"$out" || grep -q UNEXPECTED <<<"$out"; then
            failed "portcullis-loadtest saw errors" "$t" "$out"
        fi
        local figures
        figures=$(awk '$1 == "target" && $2 ~ /\/s$/ { sub("/s", "", $2); print $2, $3, $4, $5 }' <<<"$out")
        [ -n "$figures" ] || failed "portcullis-loadtest printed no figures" "$t" "$out"
        echo "$t portcullis-loadtest $figures"
    fi
}

: >"$work/runs.txt"
printf '%-8s %-20s %12s %9s %9s %9s   (closed loop, %s connections, %s s each)\n' \
    target generator "req/s" "p50 µs" "p90 µs" "p99 µs" "$CONNS" "$DUR"
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order="wrk ours"; else order="ours wrk"; fi
    for t in $TARGETS; do
        for g in $order; do
            line=$(measure "$g" "$t")
            echo "$line" >>"$work/runs.txt"
            awk '{ printf "%-8s %-20s %12s %9.1f %9.1f %9.1f\n", $1, $2, $3, $4, $5, $6 }' <<<"$line"
        done
    done
done

echo
echo "medians, and portcullis-loadtest against wrk:"
python3 - "$work/runs.txt" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = {}
for t in ("gateway", "hop", "direct"):
    for g in ("wrk", "portcullis-loadtest"):
        xs = [list(map(float, r[2:6])) for r in rows if r[0] == t and r[1] == g]
        med[t, g] = [statistics.median(c) for c in zip(*xs)]
        rps, p50, p90, p99 = med[t, g]
        print(f"  {t:<8} {g:<20} {rps:10.0f}/s  p50 {p50:8.1f}  p90 {p90:8.1f}  p99 {p99:8.1f} µs")
    w, o = med[t, "wrk"], med[t, "portcullis-loadtest"]
    d = [100.0 * (o[i] - w[i]) / w[i] for i in range(4)]
    print(f"  {t:<8} {'difference':<20} {d[0]:+9.1f}%   p50 {d[1]:+7.1f}%  p90 {d[2]:+7.1f}%  p99 {d[3]:+7.1f}%")
EOF
