#!/bin/sh
# A Python virtual environment with the pinned packages of a requirements
# file (from PyPI), created once and cached under
# ~/.cache/spendguard/venv-<hash of the file>: a changed file is a new
# venv. Prints the venv's python. Debian's python3 and python3-venv
# (tools/deps.sh).
#
#   tools/pyvenv.sh REQUIREMENTS
#
# Environment: SG_KAFKA_CACHE (default ~/.cache/spendguard), PYTHON3
# (default /usr/bin/python3).
set -eu

req=${1:?usage: pyvenv.sh REQUIREMENTS}
py=${PYTHON3:-/usr/bin/python3}
key=$(cat "$req" | sha256sum | cut -c1-12)
venv="${SG_KAFKA_CACHE:-${HOME:-/tmp}/.cache/spendguard}/venv-$key"

if [ ! -f "$venv/complete" ]; then
        mkdir -p "$(dirname "$venv")"
        (
                flock 9
                if [ ! -f "$venv/complete" ]; then
                        rm -rf "$venv"
                        echo "pyvenv.sh: installing $req into $venv" >&2
                        "$py" -m venv "$venv" >&2
                        "$venv/bin/pip" install -q --disable-pip-version-check \
                                -r "$req" >&2 ||
                                { echo "pyvenv.sh: pip install failed" >&2; exit 1; }
                        touch "$venv/complete"
                fi
        ) 9>"$venv.lock"
fi
echo "$venv/bin/python"
