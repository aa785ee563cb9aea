#!/usr/bin/env bash
# The GPU measurements of issue 13 in one go, at most ~9.5 minutes on a CUDA machine:
#   benchmarks/gpu_throughput.sh OUT_FOLDER
# writes OUT_FOLDER/gpu_throughput.json (benchmarks/video_throughput.py --gpu: frames/s of the default model and
# upsr-large at 480p -> 1080p, batch 1/4/8, bf16 and fp32, upsr-large's TFLOP/s and share of bf16 peak, the
# end-to-end run with and without --compile), OUT_FOLDER/test_cuda.txt (bf16/compile vs fp32, PSNR >= 45 dB) and
# OUT_FOLDER/temporal_cost_gpu.json (benchmarks/temporal_cost.py --device cuda: the temporal modes' cost per frame).
set -u
out="${1:?usage: benchmarks/gpu_throughput.sh OUT_FOLDER}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device here')" || exit 2
timeout 320 python benchmarks/video_throughput.py --gpu --out "$out" --budget 240 2>&1 | tee "$out/gpu_throughput.txt"
timeout 150 python -m pytest -q tests/test_cuda.py 2>&1 | tee "$out/test_cuda.txt"
# issue 12's flow share where it matters: the default mode against per-frame noise, wall time per frame on the GPU
timeout 90 python benchmarks/temporal_cost.py --device cuda --modes independent,flow,flow-recurrent \
    --json "$out/temporal_cost_gpu.json" 2>&1 | tee "$out/temporal_cost_gpu.txt"
