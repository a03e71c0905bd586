#!/usr/bin/env bash
# Creates (or reuses) the Python virtualenv with the real FDSN client the interoperability
# tests drive (ObsPy, which brings lxml for the QuakeML XSD check), outside the repository so
# repeated runs are fast. Prints the venv's python path on its last line.
#   QUAKESYNC_PYENV   where the venv lives (default: ~/.cache/quakesync/pyenv)
set -euo pipefail
venv="${QUAKESYNC_PYENV:-$HOME/.cache/quakesync/pyenv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import obspy, lxml' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'obspy>=1.4,<2' lxml
fi
"$venv/bin/python" -c 'import obspy, lxml; print("obspy", obspy.__version__)' >&2
echo "$venv/bin/python"
