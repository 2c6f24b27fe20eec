#!/usr/bin/env bash
# Copies espeak-ng (binary, the shared libraries it loads beyond libc, English data) into
# .device-carry/espeak for tools/demo_model/device_train.sh on a machine without it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dest="$root/.device-carry/espeak"
data=/usr/lib/x86_64-linux-gnu/espeak-ng-data
rm -rf "$dest" && mkdir -p "$dest/bin" "$dest/lib" "$dest/espeak-ng-data"
cp /usr/bin/espeak-ng "$dest/bin/"
ldd /usr/bin/espeak-ng | awk '/=>/ {print $3}' | grep -v -E '/(libc|libm|libpthread|libdl|ld-linux)[.-]' |
  xargs -I{} cp -L {} "$dest/lib/"
# English needs the phoneme tables, intonation, voices, languages and en_dict only.
(cd "$data" && cp -r phondata phonindex phontab intonations lang voices en_dict "$dest/espeak-ng-data/")
du -sh "$dest"
