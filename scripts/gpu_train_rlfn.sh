#!/usr/bin/env bash
# The RLFN video candidate trained on a lent CUDA GPU in a bounded time (issue 11 item 4): the same recipes as
# scripts/train_rlfn_video.sh (configs/g-rlfn-video.yaml, then configs/upsr-rlfn-video.yaml on that g), each
# for a time budget instead of a step count (training --time-budget: the count is set from the speed measured
# in the warm-up, logged and exported, so `--steps <count>` with the same config reproduces a run), with the
# batches built ahead by loader processes. Run from the repo root with ../shared beside it:
#   scripts/gpu_train_rlfn.sh OUT_FOLDER [G_SECONDS=200] [DENOISER_SECONDS=270]
# Writes to OUT_FOLDER: g-rlfn-video-gpu.safetensors (g alone, as soon as it is trained),
# upsr-rlfn-video-gpu.safetensors (denoiser + that g), both runs' log.jsonl, gpu.txt (the GPU and versions).
# The runs are runs/g-rlfn-video-gpu and runs/upsr-rlfn-video-gpu. About G + DENOISER + 40 seconds (on an H200
# the defaults gave 3361 + 2333 steps).
set -euo pipefail
out="${1:?usage: scripts/gpu_train_rlfn.sh OUT_FOLDER [G_SECONDS] [DENOISER_SECONDS]}"
g_s="${2:-200}"
d_s="${3:-270}"
cd "$(dirname "$0")/.."
mkdir -p "$out"
python3 - <<'EOF' | tee "$out/gpu.txt"
import os, torch
assert torch.cuda.is_available(), "no CUDA device here"
print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}, {os.cpu_count()} CPUs")
EOF
workers=$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))  # the training process and the pin-memory thread keep two cores
common=(--set "workers=$workers" --set ckpt_every=1000 --set log_every=100)
export PYTHONUNBUFFERED=1
python3 -m training g --config configs/g-rlfn-video.yaml --out runs/g-rlfn-video-gpu --time-budget "$g_s" \
    --set val_every=2500 "${common[@]}"
cp runs/g-rlfn-video-gpu/model.safetensors "$out/g-rlfn-video-gpu.safetensors"
cp runs/g-rlfn-video-gpu/log.jsonl "$out/g-rlfn-video-gpu.log.jsonl"
python3 -m training upsr --config configs/upsr-rlfn-video.yaml --out runs/upsr-rlfn-video-gpu --time-budget "$d_s" \
    --set aux_checkpoint=runs/g-rlfn-video-gpu/model.safetensors --set val_every=1000 "${common[@]}"
cp runs/upsr-rlfn-video-gpu/model.safetensors "$out/upsr-rlfn-video-gpu.safetensors"
cp runs/upsr-rlfn-video-gpu/log.jsonl "$out/upsr-rlfn-video-gpu.log.jsonl"
