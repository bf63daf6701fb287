#!/usr/bin/env bash
# Direct vs Portcullis vs nginx, in one interleaved run.
#
# Installs nginx if it is missing (Debian/Ubuntu: apt-get), starts it as a plain reverse
# proxy (no authorization at all, one worker, keep-alive to the upstream, no access log)
# in front of the load test's built-in backend on loopback, and runs
# `portcullis-loadtest compare` with it as a third target. nginx's worker is pinned to
# the same CPU as the gateway, and its CPU time is read for the per-core figures.
#
#   loadtest/compare-nginx.sh                       # default rates, 10 s per run
#   loadtest/compare-nginx.sh --rates 5000,20000 --duration 20s --rounds 3 --out results
#   GATEWAY_BIN=target/pgo/release/portcullis loadtest/compare-nginx.sh
#
# Every argument is passed to `portcullis-loadtest compare`. By default Portcullis is the
# gateway built into the load generator; with GATEWAY_BIN it is that build of
# `portcullis serve` run as its own process (one worker, on the same CPU as nginx) from a
# `portcullis-loadtest setup` deployment, so a build such as loadtest/pgo-build.sh's can
# be compared.
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND=127.0.0.1:${BACKEND_PORT:-18080}
NGINX_LISTEN=127.0.0.1:${NGINX_PORT:-18081}
NGINX_CPU=${NGINX_CPU:-0}

work=$(mktemp -d)
. loadtest/processes.sh

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "nginx is not installed; installing it with apt-get" >&2
    apt_install nginx-light nginx
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

mkdir -p "$work/logs"
mask=1
for ((i = 0; i < NGINX_CPU; i++)); do mask="${mask}0"; done
cat >"$work/nginx.conf" <<EOF
worker_processes 1;
worker_cpu_affinity $mask;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream backend {
        server $BACKEND;
        keepalive 256;
    }
    server {
        listen $NGINX_LISTEN reuseport;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
        }
    }
}
EOF
"$NGINX" -p "$work" -c "$work/nginx.conf" -e "$work/logs/error.log"
for _ in $(seq 50); do [ -s "$work/nginx.pid" ] && break; sleep 0.1; done
master=$(cat "$work/nginx.pid")
pids+=("$master")
workers=$(pgrep -P "$master" | paste -sd, -)
echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*\///') on $NGINX_LISTEN (master $master, worker $workers on CPU $NGINX_CPU) -> backend $BACKEND" >&2

cargo build --release --locked -p portcullis-loadtest >&2
gateway=()
if [ -n "${GATEWAY_BIN:-}" ]; then
    gw_bin=$(realpath "$GATEWAY_BIN")
    [ -x "$gw_bin" ] || { echo "GATEWAY_BIN is not an executable: $GATEWAY_BIN" >&2; exit 2; }
    gw_listen=127.0.0.1:${GATEWAY_PORT:-18083}
    ./target/release/portcullis-loadtest setup --out "$work/gateway" --backend "$BACKEND" \
        --listen "$gw_listen" --admin-listen "127.0.0.1:${ADMIN_PORT:-18084}" --cores 1 >/dev/null
    (cd "$work/gateway" && exec taskset -c "$NGINX_CPU" "$gw_bin" serve --config gateway.toml) \
        2>"$work/gateway.log" &
    gateway_pid=$!
    pids+=("$gateway_pid")
    wait_port "${gw_listen#*:}" "$gateway_pid" "$work/gateway.log"
    echo "portcullis: $gw_bin on $gw_listen (pid $gateway_pid, CPU $NGINX_CPU)" >&2
    gateway=(--gateway "$gw_listen" --deployment "$work/gateway" --pids "portcullis=$gateway_pid")
fi
./target/release/portcullis-loadtest compare \
    --backend-listen "$BACKEND" \
    --proxy "nginx=$NGINX_LISTEN" --pids "nginx=$workers" \
    "${gateway[@]}" "$@"
