#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: a figure that does not move
# with whatever else runs on the machine (wall-clock CPU time here swings by tens of percent).
#
# Usage: bench/instructions.sh [REQUESTS] [CONNECTIONS] [h1|h2] [-- EXTRA PROXY FLAGS...]
#   (defaults: 3000 16 h1). Needs valgrind and h2load (Debian: valgrind, nghttp2-client).
#
# Builds the release proxy and the fast upstream (examples/bench_upstream.rs), starts the proxy
# under callgrind with instrumentation off, warms up (connections, token cache, pools), counts
# exactly REQUESTS requests, and prints instructions per request. The profile stays in
# target/bench/callgrind.out* for `callgrind_annotate --inclusive=yes`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
requests=${1:-3000}
conns=${2:-16}
proto=${3:-h1}
shift $(( $# < 3 ? $# : 3 ))
[ "${1:-}" = "--" ] && shift
for tool in valgrind callgrind_control h2load; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install valgrind nghttp2-client)" >&2; exit 1; }
done

cd "$repo"
cargo build --release --quiet --bin kube-oidc-proxy --example bench_upstream
target=${CARGO_TARGET_DIR:-$repo/target}
out=$target/bench
work=$(mktemp -d)
mkdir -p "$out"
rm -f "$out"/callgrind.out*
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

"$target/release/examples/bench_upstream" "$work" >"$work/upstream.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 600); do grep -q '^PORT [0-9]' "$work/upstream.out" && break; sleep 0.1; done
port=$(awk '{ print $2; exit }' "$work/upstream.out")
proxy_port=$(free_port)
probe_port=$(free_port)
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/callgrind.out" \
  "$target/release/kube-oidc-proxy" --bind-address=127.0.0.1 --secure-port="$proxy_port" \
  --readiness-probe-port="$probe_port" --tls-cert-file="$work/serving.crt" \
  --tls-private-key-file="$work/serving.key" --oidc-issuer-url="https://127.0.0.1:$port" \
  --oidc-client-id=kube --oidc-ca-file="$work/ca.crt" --oidc-username-claim=sub \
  --oidc-groups-claim=groups --server="https://127.0.0.1:$port" \
  --certificate-authority="$work/ca.crt" --token=bench "$@" >/dev/null 2>"$work/valgrind.log" &
proxy=$!
pids+=("$proxy")
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$probe_port/ready" >/dev/null && break; sleep 0.2; done

load() {
  local args=(-c "$conns" -m 1 -n "$1" -H "authorization: Bearer $(cat "$work/token")")
  [ "$proto" = h1 ] && args+=(--h1)
  h2load "${args[@]}" "https://127.0.0.1:$proxy_port/api/v1/namespaces/default"
}
load $((conns * 20)) >/dev/null 2>&1
callgrind_control -i on "$proxy" >/dev/null 2>&1
load "$requests" >"$work/h2load.out" 2>&1
callgrind_control -i off "$proxy" >/dev/null 2>&1
callgrind_control -d "$proxy" >/dev/null 2>&1
sleep 1
ok=$(awk '/^status codes:/ { print $3 }' "$work/h2load.out")
[ "$ok" = "$requests" ] || { echo "only $ok of $requests requests got a 2xx" >&2; cat "$work/h2load.out" >&2; exit 1; }
total=$(cat "$out"/callgrind.out* | awk '/^totals:/ { s += $2 } END { print s }')
echo "$proto, $conns connections, $requests requests: $((total / requests)) instructions per request (profile: $out/callgrind.out*)"
