#!/usr/bin/env bash
# The UPSR ablation with the video recipe: four denoisers with the same data, seed, g and steps, differing only in
# UNW (b_u = 1 is ResShift's isotropic noise) and in whether the denoiser sees g (g-condition off: input
# cat[x_t, y0] and x0 = y0 + f, so no path carries g into the network). Equal steps: STEPS (default 600) for all
# four, the UPSR row included (a shorter run of configs/upsr-video.yaml, not the shipped model). Then Set14 x4.
# Every row trains half its samples at the sampler's start state (start_prob 0.5, as configs/upsr-video-start.yaml
# does for the shipped denoiser): at that state x_t is built around g, so the rows without the g-condition still
# see g through x_t, as they do at test time (the truncated start is anchored on g for every model).
set -euo pipefail
CFG=configs/upsr-video.yaml
STEPS=${STEPS:-600}
common=(--steps "$STEPS" --set val_every=0 --set start_prob=0.5)
python -m training upsr -c $CFG --out runs/abl-resshift "${common[@]}" --set 'unw={b_u: 1.0, psi_max: 0.1}' \
    --set 'denoiser={preset: upsr-small, g_cond: false, residual: y0}'
python -m training upsr -c $CFG --out runs/abl-unw "${common[@]}" \
    --set 'denoiser={preset: upsr-small, g_cond: false, residual: y0}'
python -m training upsr -c $CFG --out runs/abl-gcond "${common[@]}" --set 'unw={b_u: 1.0, psi_max: 0.1}'
python -m training upsr -c $CFG --out runs/abl-upsr "${common[@]}"
python scripts/quality_bars.py --steps 1 --json reports/ablation.json --ablation runs/abl-resshift/model.safetensors \
    runs/abl-unw/model.safetensors runs/abl-gcond/model.safetensors runs/abl-upsr/model.safetensors
