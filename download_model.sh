#!/usr/bin/env bash
# Downloads the real Voxtral Realtime 4B model (Mistral layout, ~9 GB) from Hugging Face.
# Resumable: run it again after an interruption and it continues where it stopped. Every
# file's size is checked against what the server announces.
#
#   ./download_model.sh [DIR]        (default DIR: models/voxtral-realtime-4b)
#   HF_TOKEN=... ./download_model.sh  if your network needs an authenticated download
set -euo pipefail

repo="mistralai/Voxtral-Mini-4B-Realtime-2602"
dir="${1:-models/voxtral-realtime-4b}"
base="https://huggingface.co/${repo}/resolve/main"
files=(params.json tekken.json consolidated.safetensors)

command -v curl >/dev/null || { echo "download_model.sh: curl is required (apt-get install curl)" >&2; exit 1; }
auth=()
if [ -n "${HF_TOKEN:-}" ]; then auth=(-H "Authorization: Bearer ${HF_TOKEN}"); fi
mkdir -p "$dir"

remote_size() {  # the size the server announces for a file (after redirects)
  curl -sSIL "${auth[@]}" "$1" | tr -d '\r' | awk 'tolower($1)=="content-length:" {n=$2} END {print n}'
}

for f in "${files[@]}"; do
  url="${base}/${f}"
  want=$(remote_size "$url")
  if [ -z "$want" ]; then echo "download_model.sh: cannot reach $url" >&2; exit 1; fi
  have=$(stat -c %s "$dir/$f" 2>/dev/null || echo 0)
  if [ "$have" = "$want" ]; then
    echo "$f: complete ($have bytes)"
    continue
  fi
  echo "$f: downloading $want bytes (have $have)"
  curl -fL --retry 5 --retry-delay 5 -C - "${auth[@]}" -o "$dir/$f" "$url"
  have=$(stat -c %s "$dir/$f")
  if [ "$have" != "$want" ]; then
    echo "download_model.sh: $f has $have bytes, expected $want; run the script again to resume" >&2
    exit 1
  fi
done
echo "model ready in $dir"
echo "try: ./voxtral -d $dir -i ../shared/samples/jfk.wav"
