#!/usr/bin/env bash
# Run lessons 07 and 08 in full mode on a CUDA GPU (COURSE_DEVICE=cuda) and print wall time and peak GPU memory.
# The notebooks are executed with papermill into a temporary copy; the committed (CPU) outputs are not touched.
# Usage: benchmarks/gpu_check.sh [notebook ...]     (default: notebooks/07_finetuning_cost.ipynb notebooks/08_lora.ipynb)
# Needs a CUDA build of torch in .venv (see README, "Using a GPU"); env PYTHON overrides the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
PAPERMILL=${PAPERMILL:-"$PYTHON -m papermill"}
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu-check: this torch build sees no CUDA GPU ($("$PYTHON" -c 'import torch; print(torch.__version__)'))." >&2
    exit 1
fi
"$PYTHON" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
notebooks=("$@")
[ ${#notebooks[@]} -gt 0 ] || notebooks=(notebooks/07_finetuning_cost.ipynb notebooks/08_lora.ipynb)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for nb in "${notebooks[@]}"; do
    name=$(basename "$nb" .ipynb)
    out="$work/$name.ipynb"
    peak_file="$work/$name.peak"
    start=$(date +%s)
    # COURSE_PEAK_FILE: the lessons' last cell writes torch.cuda.max_memory_allocated() there (bytes).
    if COURSE_DEVICE=cuda COURSE_FAST=0 COURSE_PEAK_FILE="$peak_file" TQDM_DISABLE=1 \
        $PAPERMILL --cwd notebooks -k python3 "$nb" "$out" --log-level WARNING; then
        result=ok
    else
        result=FAILED
        status=1
    fi
    seconds=$(( $(date +%s) - start ))
    peak=$( [ -s "$peak_file" ] && "$PYTHON" -c "print(f'{int(open(\"$peak_file\").read()) / 2**30:.2f} GiB')" || echo "n/a")
    echo "$name: $result, wall ${seconds} s, peak GPU memory allocated ${peak}"
done
exit $status
