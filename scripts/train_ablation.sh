#!/usr/bin/env bash
# The ablation of the training issue at our scale: four denoisers on the same data, seed and steps as each
# other (the default config's 600 steps), differing only in UNW (b_u = 1 is ResShift's isotropic noise) and in
# whether the denoiser sees g (g-condition off: input cat[x_t, y0] and x0 = y0 + f, so no path carries g into the
# network). g is the frozen default g (runs/g-compact-s). The UNW-on/g-on row is the default run itself
# (runs/upsr-small, same config and steps; validation does not touch the training RNG). Then scores all four on
# Set14 x4.
set -euo pipefail
CFG=configs/upsr-small.yaml
common=(--set val_every=0)
python -m training upsr -c $CFG --out runs/abl-resshift "${common[@]}" --set 'unw={b_u: 1.0, psi_max: 0.1}' \
    --set 'denoiser={preset: upsr-small, g_cond: false, residual: y0}'
python -m training upsr -c $CFG --out runs/abl-unw "${common[@]}" \
    --set 'denoiser={preset: upsr-small, g_cond: false, residual: y0}'
python -m training upsr -c $CFG --out runs/abl-gcond "${common[@]}" --set 'unw={b_u: 1.0, psi_max: 0.1}'
test -f runs/upsr-small/model.safetensors || python -m training upsr -c $CFG
python scripts/eval_quality.py --json runs/ablation.json --ablation runs/abl-resshift/model.safetensors \
    runs/abl-unw/model.safetensors runs/abl-gcond/model.safetensors runs/upsr-small/model.safetensors
