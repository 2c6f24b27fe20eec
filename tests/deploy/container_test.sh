#!/usr/bin/env bash
# Builds the CPU image (Dockerfile) with podman and runs it on the demo model: an upload of
# samples/timer.wav over HTTP and a Wyoming `describe` must answer from inside the container.
#   tests/deploy/container_test.sh REPOSITORY_ROOT      (as root; podman and runc installed)
# No registry is reachable, so the Debian 12 base image is made with mmdebstrap and imported
# (kept as localhost/debian:bookworm for later runs). On these machines (a container
# themselves, cgroups v1 in hybrid mode, no CAP_SYS_RESOURCE) podman's default runtime crun
# cannot start a container ("cgroups in hybrid mode not supported", "setrlimit
# RLIMIT_NOFILE: Operation not permitted"): runc is used, with limits no higher than the
# host's, and the host's network (no bridge can be set up).
set -euo pipefail
root="$(cd "${1:?usage: container_test.sh REPOSITORY_ROOT}" && pwd)"
image=localhost/voxtral-cpu:test
name="voxtral-container-test-$$"
podman_flags=(--runtime runc)
run_flags=(--network host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

for tool in podman runc mmdebstrap curl python3; do
  command -v "$tool" > /dev/null || { echo "container_test: $tool is not installed" >&2; exit 2; }
done

cleanup() {
  podman "${podman_flags[@]}" rm -f "$name" > /dev/null 2>&1 || true
}
trap cleanup EXIT

if ! podman image exists localhost/debian:bookworm; then
  echo "== container_test: the base image (mmdebstrap --variant=minbase bookworm | podman import)"
  mmdebstrap --variant=minbase --quiet bookworm - | podman import - localhost/debian:bookworm > /dev/null
fi

echo "== container_test: podman build (Dockerfile)"
start=$SECONDS
podman "${podman_flags[@]}" build "${run_flags[@]}" --build-arg BASE=localhost/debian:bookworm \
  -t "$image" -f "$root/Dockerfile" "$root"
echo "== container_test: built in $((SECONDS - start)) s"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
wyoming=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
podman "${podman_flags[@]}" run -d --name "$name" "${run_flags[@]}" -v "$root/models/demo:/model:ro" "$image" \
  -d /model --host 127.0.0.1 --port "$port" --wyoming "$wyoming" > /dev/null
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/health" > /dev/null && break
  sleep 0.2
done

got=$(curl -sf "http://127.0.0.1:$port/v1/audio/transcriptions" -F file=@"$root/samples/timer.wav" -F response_format=text)
want="set a timer for ten minutes"
if [ "$got" != "$want" ]; then
  podman logs "$name" >&2 || true
  echo "container_test: the container transcribed \"$got\", want \"$want\"" >&2
  exit 1
fi
echo "== container_test: HTTP upload ok: $got"

python3 - "$wyoming" <<'PY'
import json, socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30) as s:
    s.sendall(b'{"type": "describe"}\n')
    stream = s.makefile("rb")
    header = json.loads(stream.readline())
    data = json.loads(stream.read(header.get("data_length", 0)) or "{}")
    assert header["type"] == "info" and data["asr"][0]["models"][0]["name"] == "model", (header, data)
print("== container_test: Wyoming describe ok: model", data["asr"][0]["models"][0]["name"])
PY
podman "${podman_flags[@]}" stop -t 10 "$name" > /dev/null
status=$(podman inspect -f '{{.State.ExitCode}}' "$name")
[ "$status" = 0 ] || { echo "container_test: the server exited with $status on SIGTERM" >&2; exit 1; }
echo "== container_test: passed (the server stopped on SIGTERM with status 0)"
