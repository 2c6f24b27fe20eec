#!/usr/bin/env bash
# nginx in front of two voxtral-server processes on loopback (deploy/nginx.conf.template):
# uploads through nginx reach both servers, and realtime WebSocket sessions work through it.
#   tests/deploy/nginx_test.sh <voxtral-server> <voxtral-loadtest> <repository root>
set -euo pipefail
server="$1" loadtest="$2" root="$3"
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$nginx_bin" ] || { echo "nginx is not installed (scripts/setup.sh installs it)"; exit 1; }
dir="$(mktemp -d)"
pids=()
cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    for f in "$dir"/server*.log "$dir/error.log"; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done
  fi
  [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

start_server() {  # sets $port to the port the server picked
  "$server" -d "$root/models/demo" --port 0 2> "$dir/server$1.log" &
  pids+=($!)
  for _ in $(seq 100); do
    port="$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$dir/server$1.log")"
    [ -n "$port" ] && return
    sleep 0.1
  done
  echo "server $1 did not start: $(cat "$dir/server$1.log")" >&2
  exit 1
}
start_server a
port_a="$port"
start_server b
port_b="$port"
listen="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
sed -e "s|LISTEN|127.0.0.1:$listen|" \
    -e "s|UPSTREAM_SERVERS|server 127.0.0.1:$port_a; server 127.0.0.1:$port_b;|" \
    "$root/deploy/nginx.conf.template" > "$dir/nginx.conf"
mkdir -p "$dir/logs"
"$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$listen/health" > /dev/null && break; sleep 0.1; done

expected="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["text"])' "$root/samples/timer.json")"
for i in $(seq 20); do
  got="$(curl -s "http://127.0.0.1:$listen/v1/audio/transcriptions" -F file=@"$root/samples/timer.wav" -F response_format=text)"
  [ "$got" = "$expected" ] || { echo "upload $i through nginx: got \"$got\", want \"$expected\""; exit 1; }
done
count() { curl -sf "http://127.0.0.1:$1/metrics" | sed -n 's|^voxtral_requests_total{endpoint="/v1/audio/transcriptions",status="200"} ||p'; }
a="$(count "$port_a")" b="$(count "$port_b")"
echo "uploads through nginx: ${a:-0} on server A, ${b:-0} on server B"
[ "${a:-0}" -gt 0 ] && [ "${b:-0}" -gt 0 ] || { echo "nginx did not spread the connections over both servers"; exit 1; }

# Four realtime sessions through nginx, paced at real time, each must get the words.
"$loadtest" --port "$listen" -i "$root/samples/timer.wav" -n 4 --expect "$expected"
echo "nginx test passed"
