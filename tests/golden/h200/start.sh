#!/bin/sh
# Exported values are literal data, single-quoted on purpose: nothing in them may expand.
# shellcheck disable=SC2016,SC1003
# Rendered by kiln 0.1.0 for comfyui on NVIDIA H200; do not edit.
set -eu

export TORCHINDUCTOR_CACHE_DIR=/cache/inductor
export TRITON_CACHE_DIR=/cache/triton
export CUDA_CACHE_PATH=/cache/cuda
export HF_HOME=/cache/hf

# The GPU profile's flags; KILN_CPU_MODE=1 swaps them for --cpu (tests on hosts without a GPU only).
if [ "${KILN_CPU_MODE:-0}" = 1 ]; then
    echo "kiln: KILN_CPU_MODE=1: ComfyUI runs every model on the CPU (for tests only)" >&2
    set -- --cpu
else
    set -- --highvram --reserve-vram 0.5
fi

cd /opt/comfyui
exec /opt/venv/bin/python main.py --listen 0.0.0.0 --port 8188 --extra-model-paths-config /opt/kiln/extra_model_paths.yaml "$@" --preview-method none --disable-auto-launch

