#!/usr/bin/env bash
# Create .venv-fhir with the local FHIR test server (sekmet-fhir), pinned by fhir-server-requirements.txt.
# Idempotent: does nothing when the venv already holds exactly this requirements file.
# Usage: scripts/fhir-server-venv.sh [VENV_DIR]   (default: .venv-fhir next to this repo's Makefile)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-${ILIAC_CDS_FHIR_VENV:-$here/../.venv-fhir}}"
python="${PYTHON:-python3.11}"
requirements="$here/fhir-server-requirements.txt"
stamp="$venv/.installed-requirements.txt"

if [ -x "$venv/bin/sekmet" ] && [ -f "$stamp" ] && cmp -s "$requirements" "$stamp"; then
    exit 0
fi
command -v "$python" >/dev/null || { echo "fhir-server-venv: $python not found" >&2; exit 1; }
echo "fhir-server-venv: installing the FHIR test server into $venv"
test -d "$venv" || "$python" -m venv "$venv"
"$venv/bin/pip" install -qq --upgrade pip
"$venv/bin/pip" install -qq -r "$requirements"
"$venv/bin/sekmet" --version >/dev/null
cp "$requirements" "$stamp"
