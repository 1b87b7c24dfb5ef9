# Sourced by scripts/comfybot and scripts/test: make sure .venv exists and holds this checkout's install.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "comfybot needs Python 3.11 or newer as '$py' (set PYTHON=/path/to/python3.11)" >&2
    exit 2
fi
if [ ! -x "$root/.venv/bin/python" ]; then
    "$py" -m venv "$root/.venv"
fi
if [ ! -f "$root/.venv/.installed" ] || [ "$root/pyproject.toml" -nt "$root/.venv/.installed" ]; then
    "$root/.venv/bin/pip" install -q --disable-pip-version-check -e "$root[dev]"
    touch "$root/.venv/.installed"
fi
