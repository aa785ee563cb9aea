#!/usr/bin/env bash
# Reproduces the bundled default checkpoint (CPU, 2 cores): g, then the upsr-small denoiser with g frozen,
# then evaluates on Set14 and bundles it. Run from the repo root with ../shared beside it.
set -euo pipefail
python -m training g --config configs/g-compact-s.yaml
python -m training upsr --config configs/upsr-small.yaml
python scripts/quality_bars.py --checkpoint runs/upsr-small/model.safetensors --only set14 --json runs/upsr-small/set14.json || true
python scripts/bundle_checkpoint.py runs/upsr-small/model.safetensors upsr_video/weights/upsr-small-default.safetensors \
    --name upsr-small-default --note "configs/g-compact-s.yaml + configs/upsr-small.yaml, scripts/train_default.sh" \
    --metrics runs/upsr-small/set14.json
