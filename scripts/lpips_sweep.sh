#!/usr/bin/env bash
# The perception-distortion trade of the denoiser's loss: configs/upsr-rlfn-video2.yaml (MSE + 0.25 LPIPS, run as
# runs/upsr-rlfn-video2) re-run with the LPIPS weight at 0 and at 0.5 (the paper's), everything else equal (init,
# g, data draws, 1500 steps), then all three chosen between on held-out training-pool crops with one denoiser call
# from s = 0 (the start every calibration here picked). Needs runs/g-rlfn-video2 and runs/upsr-rlfn-video2
# (python -m training g|upsr --config configs/g-rlfn-video2.yaml|configs/upsr-rlfn-video2.yaml).
#   bash scripts/lpips_sweep.sh      # writes reports/rlfn_candidate2/lpips_sweep.json
set -euo pipefail
for w in 0 0.5; do
    python -m training upsr --config configs/upsr-rlfn-video2.yaml --out runs/upsr-rlfn-video2-lpips$w \
        --set "loss={mse: 1.0, lpips: $w}"
done
for run in upsr-rlfn-video2 upsr-rlfn-video2-lpips0 upsr-rlfn-video2-lpips0.5; do
    python scripts/bundle_checkpoint.py runs/$run/model.safetensors runs/$run/$run.safetensors --name $run
done
python scripts/holdout_choice.py runs/upsr-rlfn-video2-lpips0/upsr-rlfn-video2-lpips0.safetensors \
    runs/upsr-rlfn-video2/upsr-rlfn-video2.safetensors runs/upsr-rlfn-video2-lpips0.5/upsr-rlfn-video2-lpips0.5.safetensors \
    --steps 1 --threads 2 --json reports/rlfn_candidate2/lpips_sweep.json
