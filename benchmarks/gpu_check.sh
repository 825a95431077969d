#!/usr/bin/env bash
# Run lessons 07 and 08 in full mode on a CUDA GPU (COURSE_DEVICE=cuda) and print wall time and peak GPU memory.
# The notebooks run with papermill into a temporary copy: the committed (CPU) outputs are not touched.
# Usage: benchmarks/gpu_check.sh [notebook ...]   (default: notebooks/07_finetuning_cost.ipynb notebooks/08_lora.ipynb)
# Needs a CUDA build of torch in the environment (see README, "Using a GPU"); env PYTHON overrides the interpreter.
# Peak memory is sampled with nvidia-smi every 200 ms (so it includes the CUDA context and PyTorch's cached blocks);
# the notebooks themselves also print torch.cuda.max_memory_allocated for each measured step.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu-check: this torch build sees no CUDA GPU (torch $("$PYTHON" -c 'import torch; print(torch.__version__)'))." >&2
    exit 1
fi
"$PYTHON" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
notebooks=("$@")
[ ${#notebooks[@]} -gt 0 ] || notebooks=(notebooks/07_finetuning_cost.ipynb notebooks/08_lora.ipynb)
work=$(mktemp -d)
sampler=""
cleanup() { [ -n "$sampler" ] && kill "$sampler" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
status=0
for nb in "${notebooks[@]}"; do
    name=$(basename "$nb" .ipynb)
    samples="$work/$name.mem"
    sampler=""
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 200 > "$samples" 2>/dev/null &
        sampler=$!
    fi
    start=$(date +%s)
    if COURSE_DEVICE=cuda COURSE_FAST=0 TQDM_DISABLE=1 \
        "$PYTHON" -m papermill --cwd "$(dirname "$nb")" -k python3 "$nb" "$work/$name.ipynb" --log-level WARNING; then
        result=ok
    else
        result=FAILED
        status=1
    fi
    seconds=$(( $(date +%s) - start ))
    if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; sampler=""; fi
    peak=$( [ -s "$samples" ] && sort -n "$samples" | tail -1 | awk '{printf "%.2f GiB", $1 / 1024}' || echo "n/a")
    echo "$name: $result, wall ${seconds} s, peak GPU memory used ${peak} (nvidia-smi, whole device)"
done
exit $status
