#!/usr/bin/env bash
# Installs the Debian 12 packages voxtral needs to build and test.
# Idempotent: when every package is already installed it only checks and exits.
set -euo pipefail

packages=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libsoxr-dev libkissfft-dev nlohmann-json3-dev libcli11-dev zlib1g-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  libasound2-dev
  libboost-dev libavformat-dev libavcodec-dev libavutil-dev libswresample-dev
  espeak-ng sox curl ca-certificates openssl python3 python3-websockets
  python3-dev pybind11-dev python3-numpy python3-pytest python3-venv python3-pip python3-setuptools python3-wheel
  chromium nginx
)
# The browser test's Playwright and the OpenAI SDK test need Node.js and npm; keep any that is
# already installed.
if ! command -v npm > /dev/null; then packages+=(nodejs npm); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages already installed"
else
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The OpenAI SDK test's client (the official `openai` package and `ws`, pinned by its lock
# file) from npm, into tests/openai_sdk/node_modules; again only when the lock file changed.
sdk="$(cd "$(dirname "$0")/.." && pwd)/tests/openai_sdk"
if [ ! -f "$sdk/node_modules/.package-lock.json" ] || [ "$sdk/package-lock.json" -nt "$sdk/node_modules/.package-lock.json" ]; then
  echo "setup: npm ci in tests/openai_sdk"
  (cd "$sdk" && npm ci --no-audit --no-fund --loglevel=error)
fi
