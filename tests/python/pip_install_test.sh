#!/usr/bin/env bash
# The README's install command for the Python package, offline, into a fresh virtual
# environment: pip builds the wheel with Debian's setuptools (no build isolation, no index,
# no pip configuration), taking the module from the tests' build directory; then the README's
# example runs with that environment's python, away from the source and build trees.
# Usage: pip_install_test.sh PYTHON SOURCE_DIR BUILD_DIR
set -euo pipefail
python=$1 source=$2 build=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m venv --system-site-packages "$work/venv"
# A copy of python/: pip writes its build directory and egg-info beside setup.py.
cp -r "$source/python" "$work/python"
rm -rf "$work/python/build" "$work/python/"*.egg-info
# setup.py finds the repository from python/'s parent: link the rest of it there.
for entry in "$source"/*; do
  [ "$(basename "$entry")" = python ] || ln -s "$entry" "$work/$(basename "$entry")"
done
cd "$work"
PIP_CONFIG_FILE=/dev/null VOXTRAL_BUILD_DIR="$build" \
  "$work/venv/bin/pip" --isolated install --no-build-isolation --no-index ./python
installed=$(cd / && env -u PYTHONPATH "$work/venv/bin/python" -c 'import voxtral; print(voxtral.__file__)')
case "$installed" in
  "$work/venv/"*) ;;
  *) echo "voxtral imported from $installed, not from the virtual environment" >&2; exit 1 ;;
esac
for f in __init__.py _voxtral.pyi py.typed; do
  [ -f "$(dirname "$installed")/$f" ] || { echo "the installed package lacks $f" >&2; exit 1; }
done
cd /
env -u PYTHONPATH PYTHONDONTWRITEBYTECODE=1 VOXTRAL_SOURCE_DIR="$source" \
  "$work/venv/bin/python" -m pytest -q -p no:cacheprovider "$source/tests/python/test_readme.py"
