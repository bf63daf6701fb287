#!/usr/bin/env bash
# A profile-guided (PGO) release build of the gateway, trained on the load test's own
# workloads.
#
# The gateway's per-call cost on a loaded core is dominated by code fetched cold (the
# backend and the kernel run between two calls on the same core), not by the instruction
# count alone. PGO lets LLVM lay the hot paths out together and move cold blocks away,
# so a call touches fewer code lines and pages. BENCHMARKS.md ("Profile-guided build")
# has what it changes.
#
#   loadtest/pgo-build.sh              # writes target/pgo/release/portcullis
#   REQUESTS=200000 loadtest/pgo-build.sh
#
# Steps: an instrumented build in target/pgo-generate; a deployment from
# `portcullis-loadtest setup` with the instrumented gateway serving it in front of the
# built-in backend; the fleet mix (HTTP and MCP, allowed, denied for each reason,
# invalid envelopes, delegation) and the allowed workload sent through it; a graceful
# shutdown, which writes the profile; `llvm-profdata merge`; the optimised build in
# target/pgo. Both builds use their own target directory, so target/release stays warm.
#
# Needs llvm-profdata from the toolchain's llvm-tools component; the script adds it with
# rustup when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-100000}
BP=${BACKEND_PORT:-28480}
GP=${GATEWAY_PORT:-28481}
AP=${ADMIN_PORT:-28482}

host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
    echo "llvm-profdata is missing; adding the llvm-tools component with rustup" >&2
    rustup component add llvm-tools >&2
fi
[ -x "$profdata" ] || { echo "no llvm-profdata at $profdata after adding llvm-tools" >&2; exit 1; }

work=$(mktemp -d)
. loadtest/processes.sh
prof="$work/profile"
mkdir -p "$prof"

echo "1/4 the load generator and the instrumented gateway" >&2
cargo build --release --locked -p portcullis-loadtest >&2
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$prof" \
    cargo build --release --locked -p portcullis --bin portcullis --target-dir target/pgo-generate >&2

echo "2/4 training: $REQUESTS calls of the fleet mix and $REQUESTS allowed calls" >&2
lt=target/release/portcullis-loadtest
"$lt" setup --out "$work/d" --backend "127.0.0.1:$BP" \
    --listen "127.0.0.1:$GP" --admin-listen "127.0.0.1:$AP" --cores 1 >/dev/null
"$lt" backend --listen "127.0.0.1:$BP" --deployment "$work/d" 2>"$work/backend.log" &
bpid=$!
pids+=("$bpid")
gw_bin=$(realpath target/pgo-generate/release/portcullis)
(cd "$work/d" && exec "$gw_bin" serve --config gateway.toml) 2>"$work/gateway.log" &
gpid=$!
pids+=("$gpid")
wait_port "$BP" "$bpid" "$work/backend.log"
wait_port "$GP" "$gpid" "$work/gateway.log"
for workload in fleet allowed; do
    "$lt" run --target "127.0.0.1:$GP" --workload "$workload" --deployment "$work/d" \
        --requests "$REQUESTS" --connections 8 --quiet >"$work/run-$workload.txt" \
        || { cat "$work/run-$workload.txt" >&2; echo "the $workload training run failed" >&2; exit 1; }
    if grep -q UNEXPECTED "$work/run-$workload.txt"; then
        cat "$work/run-$workload.txt" >&2
        echo "the $workload training run had unexpected answers" >&2
        exit 1
    fi
done
# The profile is written when the process exits normally: SIGTERM is a graceful shutdown.
kill -TERM "$gpid"
wait "$gpid" || { cat "$work/gateway.log" >&2; echo "the instrumented gateway did not shut down cleanly" >&2; exit 1; }

echo "3/4 merging the profile" >&2
shopt -s nullglob
raw=("$prof"/*.profraw)
[ ${#raw[@]} -gt 0 ] || { echo "the instrumented gateway wrote no profile into $prof" >&2; exit 1; }
"$profdata" merge -o "$work/merged.profdata" "${raw[@]}"
# Named by its content: cargo rebuilds when RUSTFLAGS change, not when a file they name
# does, so a new profile under the old name would leave the old build in place.
mkdir -p target/pgo
profile=target/pgo/portcullis-$(sha256sum "$work/merged.profdata" | cut -c1-16).profdata
cp "$work/merged.profdata" "$profile"

echo "4/4 the optimised build" >&2
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$(realpath "$profile")" \
    cargo build --release --locked -p portcullis --bin portcullis --target-dir target/pgo >&2
echo "$(realpath target/pgo/release/portcullis)"
