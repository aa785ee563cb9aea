#!/usr/bin/env bash
# The UPSR ablation with the video recipe: four denoisers with the same data, seed, g and steps, differing only in
# UNW (b_u = 1 is ResShift's isotropic noise) and in whether the denoiser sees g (g-condition off: input
# cat[x_t, y0] and x0 = y0 + f, so no path carries g into the network). Equal steps: STEPS (default 600) for all
# four, the UPSR row included (a shorter run of CFG, not the shipped model), all from scratch. Then Set14 x4.
# CFG (default configs/upsr-video.yaml), START_PROB (default 0.5) and OUT (default reports/ablation.json) choose the
# recipe: CFG=configs/upsr-default-video-xt-pool.yaml START_PROB=0.9 STEPS=400 OUT=reports/clean_retrain/ablation.json
# is the bundled default's last stage; EXTRA adds --set overrides to every row (EXTRA="--set
# aux_checkpoint=runs/g-banded-rlfn.safetensors" trains on the default's g with the RLFN band).
# By default every row trains half its samples at the sampler's start state (start_prob 0.5, as configs/upsr-video-start.yaml
# does for the shipped denoiser): at that state x_t is built around g, so the rows without the g-condition still
# see g through x_t, as they do at test time (the truncated start is anchored on g for every model).
set -euo pipefail
CFG=${CFG:-configs/upsr-video.yaml}
STEPS=${STEPS:-600}
START_PROB=${START_PROB:-0.5}
OUT=${OUT:-reports/ablation.json}
common=(--steps "$STEPS" --set val_every=0 --set start_prob=$START_PROB --set init_from=null ${EXTRA:-})
python -m training upsr -c $CFG --out runs/abl-resshift "${common[@]}" --set 'unw={b_u: 1.0, psi_max: 0.1}' \
    --set 'denoiser={preset: upsr-small, g_cond: false, residual: y0}'
python -m training upsr -c $CFG --out runs/abl-unw "${common[@]}" \
    --set 'denoiser={preset: upsr-small, g_cond: false, residual: y0}'
python -m training upsr -c $CFG --out runs/abl-gcond "${common[@]}" --set 'unw={b_u: 1.0, psi_max: 0.1}'
python -m training upsr -c $CFG --out runs/abl-upsr "${common[@]}"
python scripts/quality_bars.py --steps 1 --json $OUT --ablation runs/abl-resshift/model.safetensors \
    runs/abl-unw/model.safetensors runs/abl-gcond/model.safetensors runs/abl-upsr/model.safetensors
