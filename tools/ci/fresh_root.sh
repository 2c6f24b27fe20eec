#!/usr/bin/env bash
# Runs the README's two commands on a fresh Debian 12 root, so a missing install step in
# scripts/setup.sh fails CI instead of passing on a machine that happens to have the package:
#   1. the main job: ./scripts/setup.sh && make && ./voxtral -d models/demo -i samples/timer.wav
#      (its output must be "set a timer for ten minutes")
#   2. the tests:    ./scripts/setup.sh && make test
# The root is made by `mmdebstrap --variant=apt bookworm` (Debian's essential packages and apt,
# nothing else) from the host's apt sources, entered with chroot with /proc, /sys and /dev
# mounted, and holds a copy of the repository's tracked and untracked-but-not-ignored files
# (no build directories). Mounts and the root are removed on exit, also on failure or signal.
#
#   tools/ci/fresh_root.sh            (as root; needs mmdebstrap, which .ci/run installs)
# Environment:
#   VOXTRAL_FRESH_ROOT_PARENT   where the root is made (default /var/tmp; needs about 6 GB)
#   VOXTRAL_FRESH_ROOT_SOURCES  an apt sources file (one-line or deb822) to use instead of
#                               the host's /etc/apt/sources.list{,.d/*}
#   VOXTRAL_FRESH_ROOT_KEEP=1   keep the root after the run (still unmounted) to look inside
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
expected_main_job_output="set a timer for ten minutes"

if [ "$(id -u)" -ne 0 ]; then
  echo "fresh_root: must run as root (mmdebstrap --mode=root, chroot, mount)" >&2
  exit 2
fi
command -v mmdebstrap > /dev/null || {
  echo "fresh_root: mmdebstrap is not installed (apt-get install mmdebstrap)" >&2
  exit 2
}

work="$(mktemp -d "${VOXTRAL_FRESH_ROOT_PARENT:-/var/tmp}/voxtral-fresh-root.XXXXXX")"
root="$work/root"

mounted_under_root() { findmnt -rn -o TARGET | grep -q "^$root/"; }

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # Anything still running inside the root (a test's server, a stuck build) keeps the
  # mounts busy: end those processes, which this script started.
  local p
  for p in /proc/[0-9]*; do
    if [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ]; then kill -KILL "${p#/proc/}" 2>/dev/null || true; fi
  done
  local m
  for m in dev sys proc; do
    if mountpoint -q "$root/$m" 2>/dev/null; then
      umount -R "$root/$m" 2>/dev/null || umount -R -l "$root/$m" || true
    fi
  done
  if mounted_under_root; then
    echo "fresh_root: $root still has mounts; left in place, not deleted" >&2
    [ "$status" -eq 0 ] && status=1
  elif [ "${VOXTRAL_FRESH_ROOT_KEEP:-0}" = 1 ]; then
    echo "fresh_root: kept $root"
  else
    # --one-file-system: never follow into a mount, even if one appeared after the check.
    rm -rf --one-file-system "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The host's apt sources, so the root reaches the same mirror the same way; the keyrings
# they name (Signed-By) are copied in, and the host's proxy and snapshot-mirror settings
# (Acquire::*::Proxy, Check-Valid-Until, Check-Date) are carried as apt options.
sources=()
if [ -n "${VOXTRAL_FRESH_ROOT_SOURCES:-}" ]; then
  sources=("$VOXTRAL_FRESH_ROOT_SOURCES")
else
  [ -s /etc/apt/sources.list ] && grep -q '^[[:space:]]*deb' /etc/apt/sources.list && sources+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && sources+=("$f")
  done
fi
[ ${#sources[@]} -gt 0 ] || { echo "fresh_root: the host has no apt sources" >&2; exit 2; }

keyring_hooks=()
while read -r key; do
  [ -f "$key" ] && keyring_hooks+=("--setup-hook=mkdir -p \"\$1$(dirname "$key")\" && cp \"$key\" \"\$1$key\"")
done < <(sed -n -E 's/^[[:space:]]*Signed-By:[[:space:]]*(\/[^[:space:]]+).*/\1/p; s/.*signed-by=(\/[^] ]+).*/\1/p' "${sources[@]}" | sort -u)

aptopts=()
while IFS= read -r line; do
  aptopts+=("--aptopt=$line")
done < <(apt-config dump | grep -E '^Acquire::(https?::Proxy|Check-Valid-Until|Check-Date|Retries) ' || true)

echo "== fresh_root: mmdebstrap --variant=apt bookworm into $root (sources: ${sources[*]})"
start=$SECONDS
mmdebstrap --variant=apt --mode=root --quiet "${aptopts[@]}" "${keyring_hooks[@]}" \
  bookworm "$root" "${sources[@]}"
echo "== fresh_root: root made in $((SECONDS - start)) s"

# A chroot is not a booted machine: packages must not start their services (nginx would
# take port 80 on the host's network). Debian's container images do the same.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"

# The host's own certificate authorities (a TLS-inspecting proxy's, say) go in beside the
# network settings: ca-certificates adds them to the root's bundle when setup installs it, and
# npm in the root (setup's `npm ci`) then reaches its registry the way the host does.
extra_ca=""
if compgen -G "/usr/local/share/ca-certificates/*.crt" > /dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  extra_ca="NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/all-host.pem"
  cat /usr/local/share/ca-certificates/*.crt > "$root/usr/local/share/ca-certificates/all-host.pem"
fi

mkdir -p "$root/root/voxtral"
git -C "$repo" ls-files -z --cached --others --exclude-standard |
  tar -C "$repo" --null --ignore-failed-read -T - -cf - |
  tar -C "$root/root/voxtral" -xf -

mount -t proc proc "$root/proc"
mount -t sysfs -o ro sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount --make-rslave "$root/dev"  # unmounting ours must not unmount the host's /dev/pts

in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb $extra_ca \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -euo pipefail -c "cd /root/voxtral && $1"
}

echo "== fresh_root: the README's main job"
start=$SECONDS
in_root './scripts/setup.sh && make && ./voxtral -d models/demo -i samples/timer.wav > /tmp/timer.txt'
got="$(cat "$root/tmp/timer.txt")"
if [ "$got" != "$expected_main_job_output" ]; then
  echo "fresh_root: the main job printed \"$got\", want \"$expected_main_job_output\"" >&2
  exit 1
fi
echo "== fresh_root: main job ok in $((SECONDS - start)) s: $got"

echo "== fresh_root: the README's setup-and-test command"
start=$SECONDS
in_root './scripts/setup.sh && make test'
echo "== fresh_root: tests ok in $((SECONDS - start)) s"
