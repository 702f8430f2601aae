#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one call of at most about 8 minutes; JSON into OUTDIR.
#
#   bash benchmarks/gpu_check.sh OUTDIR                  # on a machine with a CUDA GPU
#   bash benchmarks/gpu_check.sh OUTDIR --cpu-dry-run    # every step in a tiny form on the CPU (~15-25 s)
#
# The steps and the files are described in benchmarks/gpu_check.py, which this script runs (further
# arguments go to it: --budget SECONDS, --steps a,b). It needs no network and installs nothing: it uses
# the tree's own src/ (PYTHONPATH) and the first Python that has what the check needs:
#   $TFORMER_PYTHON if set; for the dry run the repository's .venv (./dev setup), else python3;
#   on a GPU the first of python3, .venv/bin/python whose torch sees a CUDA device (a fresh GPU machine's
#   python3 usually has a CUDA torch; the .venv made here holds a CPU build). If none does, the check still
#   runs with the first that imports torch, and its summary.json says that there is no CUDA device.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: bash benchmarks/gpu_check.sh OUTDIR [--cpu-dry-run] [--budget SECONDS] [--steps a,b]" >&2
  exit 2
fi
dry=0
for a in "$@"; do [ "$a" = --cpu-dry-run ] && dry=1; done

has_torch() { "$1" -c 'import torch' >/dev/null 2>&1; }
has_cuda() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; }

py=${TFORMER_PYTHON:-}
if [ -z "$py" ]; then
  candidates=()
  if [ $dry = 1 ]; then
    candidates=("$root/.venv/bin/python" python3)
  else
    candidates=(python3 "$root/.venv/bin/python")
  fi
  fallback=
  for c in "${candidates[@]}"; do
    command -v "$c" >/dev/null 2>&1 || continue
    has_torch "$c" || continue
    [ -z "$fallback" ] && fallback=$c
    if [ $dry = 1 ] || has_cuda "$c"; then py=$c; break; fi
  done
  py=${py:-$fallback}
fi
if [ -z "$py" ]; then
  echo "gpu_check: no Python with torch found (tried python3 and $root/.venv/bin/python; set TFORMER_PYTHON)" >&2
  mkdir -p "$1" && printf '{"all_ok": false, "error": "no Python with torch found"}\n' >"$1/summary.json"
  exit 1
fi
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" "$here/gpu_check.py" "$@"
