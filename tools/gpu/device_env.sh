# Sourced by the GPU check scripts (device_check.sh, batched_check.sh): the setup they share
# on the GPU test machine, which has CUDA and torch but none of the project's Debian
# packages, so the binaries come built elsewhere in a carry folder (bin/, lib/, audio/;
# tools/gpu/pack_carry.sh makes .device-carry/).
# Reads: CARRY (the carry folder; default <repo>/.device-carry), OUT (logs; default
# /tmp/voxtral-out). Sets: root, carry, bin, out, model, status, and the test suite's
# environment (LD_LIBRARY_PATH for lib/ and CUDA, the fixtures, the CLI under test).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
carry="${CARRY:-$root/.device-carry}"
[ -d "$carry" ] && carry="$(cd "$carry" && pwd)"  # the tests run from other folders
# pack_carry.sh sends the folder as one archive (a call carries at most 64 MiB).
[ -f "$carry/pack.tar.xz" ] && [ ! -d "$carry/bin" ] && tar xJf "$carry/pack.tar.xz" -C "$carry"
bin="$carry/bin"
export LD_LIBRARY_PATH="$carry/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export VOXTRAL_FIXTURES_DIR="$root/tests/fixtures" VOXTRAL_CLI="$bin/voxtral"
out="${OUT:-/tmp/voxtral-out}"
mkdir -p "$out"
# The full-size random model; kept in /tmp so that later calls on a warm machine reuse it.
model=/tmp/vox4b
status=0

step() { echo; echo "=== $(date +%T) $*"; }

# Makes the full-size random model at $model (from the real model's params.json) unless it
# is there already.
make_full_size_model() {
  [ -f "$model/consolidated.safetensors" ] ||
    "$bin/voxtral-bench" make-model --params "$root/tests/fixtures/real/params.json" --out "$model"
}
