#!/usr/bin/env bash
# Reproduces the bundled default (CPU, 2 cores; about 3 h at nice 10), in three stages, each resuming exactly
# when re-run. Run from the repo root with ../shared beside it.
#  1. The bicubic x4 base (checkpoints/upsr-small-bicubic.safetensors, the default until 2026-12-07): g
#     configs/g-compact-s.yaml, then the upsr-small denoiser configs/upsr-small.yaml with g frozen.
#  2. configs/upsr-default-video-blind.yaml: factors 1.25-4 and a mild video mix, residual on g (3500 steps).
#  3. configs/upsr-default-video-xt.yaml: that denoiser made g_xt and trained to use x_t (6359 steps), g frozen.
# Then the bundle, the start-step calibration on held-out pool crops degraded as stage 3 trains (the table the
# package ships), the curves, and the held-out comparison with the base.
set -euo pipefail
BASE=checkpoints/upsr-small-bicubic.safetensors
BLIND=checkpoints/upsr-default-video-blind.safetensors
DEFAULT=upsr_video/weights/upsr-small-default.safetensors
python -m training g --config configs/g-compact-s.yaml
python -m training upsr --config configs/upsr-small.yaml
python scripts/calibrate_start_step.py --checkpoint runs/upsr-small/model.safetensors --threads 2 \
    --out runs/upsr-small/start_steps.json --report runs/upsr-small/start_step_calibration.json --plot runs/upsr-small/start_step_calibration.png
python scripts/bundle_checkpoint.py runs/upsr-small/model.safetensors $BASE --name upsr-small-bicubic \
    --note "configs/g-compact-s.yaml (5000 steps) + configs/upsr-small.yaml (600 steps), CPU, scripts/train_default.sh" \
    --start-steps runs/upsr-small/start_steps.json
python -m training upsr --config configs/upsr-default-video-blind.yaml
python scripts/calibrate_start_step.py --checkpoint runs/upsr-default-video-blind/model.safetensors \
    --degradation-config configs/upsr-default-video-blind.yaml --threads 2 --out runs/upsr-default-video-blind/start_steps.json \
    --report reports/default_video_blind/start_step_calibration.json --plot reports/default_video_blind/start_step_calibration.png
python scripts/bundle_checkpoint.py runs/upsr-default-video-blind/model.safetensors $BLIND --name upsr-default-video-blind \
    --note "configs/upsr-default-video-blind.yaml from the bicubic base; scripts/train_default.sh" \
    --start-steps runs/upsr-default-video-blind/start_steps.json
python -m training upsr --config configs/upsr-default-video-xt.yaml
python scripts/bundle_checkpoint.py runs/upsr-default-video-xt/model.safetensors $DEFAULT --name upsr-small-default \
    --note "bicubic x4 base, then configs/upsr-default-video-blind.yaml and configs/upsr-default-video-xt.yaml (g_xt); CPU; scripts/train_default.sh"
python scripts/calibrate_start_step.py --checkpoint $DEFAULT --degradation-config configs/upsr-default-video-xt.yaml --threads 2
python scripts/plot_training.py runs/upsr-default-video-xt -o reports/default_xt/training_curves.png
python scripts/holdout_choice.py $BASE $BLIND checkpoints/upsr-default-video.safetensors $DEFAULT --threads 2 \
    --json reports/default_xt/holdout_choice.json
