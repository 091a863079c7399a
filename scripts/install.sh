#!/usr/bin/env bash
# The one install script: `make demo`, `make test`, CI, the Dockerfile and apptainer.def all call it.
#   scripts/install.sh [VENV_DIR]    (default .venv; VENV_DIR=- installs into the current Python)
#   MEDTL_INSTALL_STEP=deps scripts/install.sh VENV    torch and the dependencies only (Docker layer)
# Torch is pinned here only (pyproject ranges stay permissive so cluster users pick their CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${MEDTL_TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
# Extras of medtl to install: "dev" (tests, linters) by default; container images set it empty.
EXTRAS=${MEDTL_EXTRAS-dev}

if [ "$VENV" = "-" ]; then
  PIP=("$PYTHON" -m pip)
else
  if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  PIP=("$VENV/bin/python" -m pip)
fi

# Skip the slow part when an earlier run already completed with the same inputs.
STAMP_DIR=${VENV/#-/.}
STAMP="$STAMP_DIR/.medtl-install-stamp"
want=$( (cat pyproject.toml scripts/install.sh; echo "$EXTRAS $TORCH_SPEC") | sha256sum | cut -d' ' -f1)
if [ "$VENV" != "-" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "$VENV is up to date"
  exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ "${MEDTL_INSTALL_STEP:-}" = deps ]; then
  # Only torch and medtl's dependencies (read from pyproject.toml): the Dockerfile's first install
  # step, a layer that outlives changes to medtl's own code. Writes no stamp: the full install follows.
  mapfile -t DEPS < <("${PIP[0]}" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
  # shellcheck disable=SC2086
  "${PIP[@]}" install -q $TORCH_SPEC "${DEPS[@]}" "setuptools>=64"
  echo "dependencies installed into $VENV"
  exit 0
fi
# shellcheck disable=SC2086
"${PIP[@]}" install -q $TORCH_SPEC
if [ -n "$EXTRAS" ]; then
  "${PIP[@]}" install -q -e ".[$EXTRAS]"
else
  "${PIP[@]}" install -q -e .
fi
if [ "$VENV" != "-" ]; then
  echo "$want" > "$STAMP"
fi
echo "medtl installed into $VENV"
