#!/usr/bin/env bash
# Reproduces the bundled default (CPU, 2 cores; about 3 h at nice 10) from the training pool alone
# (../shared/data/images/train_hr; no frame of ../shared/data/video), each training stage resuming exactly when
# re-run. Run from the repo root with ../shared beside it.
#  1. g: configs/g-compact-s-pool.yaml (CompactSR x4 on the LR grid, L1, bicubic; 5000 steps), copied to
#     checkpoints/g-compact-s-pool.safetensors, which the next stage reads.
#  2. The bicubic x4 base denoiser: configs/upsr-small-pool.yaml (residual on g, 600 steps), g frozen.
#  3. configs/upsr-default-video-blind-pool.yaml: factors 1.25-4 and a mild video mix, residual on g (3500 steps).
#  4. configs/upsr-default-video-xt-pool.yaml: that denoiser made g_xt and trained to use x_t (6359 steps).
#     Bundled and calibrated (the start step the cost rule of stage 5 times the denoiser at).
#  5. The low-factor g: configs/g-compact-s-x2u-pool.yaml then g-compact-s-x2u-pool2.yaml (x2, body on
#     PixelUnshuffle(2) of the frame; 5000 + 10000 steps), copied to checkpoints/g-compact-s-x2u-pool.safetensors;
#     scripts/g_bands.py picks the switch factor by cost, and the bundle's g becomes banded (the x4 g above it).
#  6. The band above the switch becomes RLFN with its authors' bicubic x4 weights (upsr_video/weights/NOTICE.md),
#     the denoiser unchanged (README, "The RLFN x4 band").
# Then the start-step calibration again (the table the package ships), the curves, and the held-out comparison.
# (Until 2026-12-07 the same recipe ran on a base whose g and denoiser also drew frames of the shared clips:
# configs/g-compact-s.yaml, upsr-small.yaml, upsr-default-video-blind.yaml, upsr-default-video-xt.yaml; its
# result is upsr_video/weights/upsr-small-default.safetensors at commit 54e0f35. Until the banded g, 2026-12-07,
# the default was stage 4 with the x4 g at every factor: that file at commit 1f8e70f. Until the RLFN band, 2026-12-08,
# it was stage 5 with the CompactSR x4 g above x2: that file at commit 73182cd.)
set -euo pipefail
DEFAULT=upsr_video/weights/upsr-small-default.safetensors
python -m training g --config configs/g-compact-s-pool.yaml
cp runs/g-compact-s-pool/model.safetensors checkpoints/g-compact-s-pool.safetensors
python -m training upsr --config configs/upsr-small-pool.yaml
python -m training upsr --config configs/upsr-default-video-blind-pool.yaml
python -m training upsr --config configs/upsr-default-video-xt-pool.yaml
NOTE="configs/g-compact-s-pool.yaml, upsr-small-pool.yaml, upsr-default-video-blind-pool.yaml, upsr-default-video-xt-pool.yaml (g_xt)"
python scripts/bundle_checkpoint.py runs/upsr-default-video-xt-pool/model.safetensors $DEFAULT --name upsr-small-default \
    --note "$NOTE; image pool only; CPU; scripts/train_default.sh"
python scripts/calibrate_start_step.py --checkpoint $DEFAULT --degradation-config configs/upsr-default-video-xt-pool.yaml --threads 2
python -m training g --config configs/g-compact-s-x2u-pool.yaml
python -m training g --config configs/g-compact-s-x2u-pool2.yaml
cp runs/g-compact-s-x2u-pool2/model.safetensors checkpoints/g-compact-s-x2u-pool.safetensors
python scripts/g_bands.py $DEFAULT checkpoints/g-compact-s-x2u-pool.safetensors --threads 2 --json reports/g_bands/choice.json
SWITCH=$(python -c "import json; print(json.load(open('reports/g_bands/choice.json'))['switch'] or '')")
if [ -n "$SWITCH" ]; then
    python scripts/bundle_checkpoint.py $DEFAULT $DEFAULT --name upsr-small-default \
        --note "$NOTE; g banded at x$SWITCH with configs/g-compact-s-x2u-pool.yaml + g-compact-s-x2u-pool2.yaml (scripts/g_bands.py); the band above x$SWITCH RLFN with its authors' weights (upsr_video/weights/NOTICE.md); image pool only; CPU; scripts/train_default.sh" \
        --low-g checkpoints/g-compact-s-x2u-pool.safetensors --switch "$SWITCH" \
        --high-g ../shared/weights/rlfn_ntire2022_x4.safetensors --high-g-arch rlfn
    python scripts/calibrate_start_step.py --checkpoint $DEFAULT --degradation-config configs/upsr-default-video-xt-pool.yaml --threads 2
fi
python scripts/plot_training.py runs/upsr-default-video-xt-pool -o reports/clean_retrain/training_curves.png
python scripts/holdout_choice.py checkpoints/upsr-small-bicubic.safetensors $DEFAULT --threads 2
