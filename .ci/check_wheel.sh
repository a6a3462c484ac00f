#!/usr/bin/env bash
# The built artifacts, as users get them: build the sdist and wheel, check them, install
# the wheel alone (with its fake and cli extras) in a fresh venv outside the source tree,
# then run the demo, the command line and a user's test file on the plugin's fixtures.
# Run it as `nox -s wheel`, which installs build and twine.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf dist
python -m build -q
twine check --strict dist/*
python - <<'PY'
import sys, zipfile, glob
names = zipfile.ZipFile(glob.glob("dist/*.whl")[0]).namelist()
assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "no LICENSE in the wheel"
assert not any(n.startswith(("tests/", "benchmarks/", "scripts/")) for n in names), names
PY
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheel=$(ls "$PWD"/dist/*.whl)
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "${wheel}[fake,cli]" 'pytest>=8'
cp .ci/user_test.py "$work/test_user.py"
cd "$work"
venv/bin/python -m ovo_async demo
venv/bin/ovo --help >/dev/null
venv/bin/ovo --version | grep -q '^ovo-async '
venv/bin/python -m pytest -q -p no:cacheprovider test_user.py
