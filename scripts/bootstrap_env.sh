#!/usr/bin/env bash
# Create .venv (Python 3.12) and install the project exactly as uv.lock pins it.
# Called by `make` (any target that needs the environment); safe to run again: uv only
# installs what differs from the lock.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python312() {
  local c
  for c in "${PYTHON312:-}" python3.12 "$(pyenv which python3.12 2>/dev/null || true)" \
           "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

py=$(find_python312) || {
  echo "bootstrap: Python 3.12 not found (needed by dolfinx-solver-real); install it (e.g. 'pyenv install 3.12') or set PYTHON312=/path/to/python3.12" >&2
  exit 1
}
if ! "$py" -m uv --version >/dev/null 2>&1; then
  echo "bootstrap: installing uv into $py"
  "$py" -m pip install -q uv
fi
echo "bootstrap: $("$py" -m uv --version), python $("$py" -V 2>&1) -> .venv"
# --compile-bytecode: write every package's .pyc once, here. Without them each process compiles what
# it imports from source, every time, whenever PYTHONDONTWRITEBYTECODE is set (as on the development
# machine): `import torch` took 8.0 s of CPU without .pyc files and 3.8 s with them (README, "Start-up
# times"). It costs about 2 minutes of CPU once, at install.
"$py" -m uv sync --frozen --extra dev --compile-bytecode --python "$py"
