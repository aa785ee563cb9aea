#!/usr/bin/env bash
# The default's networks on the video recipe: the bundled default's denoiser fine-tuned as a g_xt denoiser at
# random factors 1.25-4 on a mild video mix, its bicubic-trained LR-grid g frozen, in two phases
# (configs/upsr-default-video.yaml for 4600 of the 15005 steps its --time-budget 6000 had set, then
# configs/upsr-default-video2.yaml from that export, with most draws at the sampler's start state); then the
# bundle, the start-step calibration on held-out training-pool crops (carried inside the checkpoint), the curves
# and the held-out choice against the default. Run from the repo root with ../shared beside it; every stage
# resumes (training exactly) when re-run.
set -euo pipefail
P1=runs/upsr-default-video
U=runs/upsr-default-video2
CKPT=${CKPT:-checkpoints/upsr-default-video.safetensors}
OUT=reports/default_video
mkdir -p $OUT "$(dirname "$CKPT")"
python -m training upsr --config configs/upsr-default-video.yaml --steps 15005 --until 4600
python -m training upsr --config configs/upsr-default-video2.yaml
python scripts/bundle_checkpoint.py $U/model.safetensors $CKPT --name upsr-default-video \
    --note "the bundled default's denoiser fine-tuned as g_xt at factors 1.25-4 on a mild video mix, its g frozen; configs/upsr-default-video.yaml (4600 steps) then configs/upsr-default-video2.yaml; scripts/train_default_video.sh"
python scripts/calibrate_start_step.py --checkpoint $CKPT --degradation-config configs/upsr-default-video2.yaml \
    --threads 2 --out $U/start_steps.json --report $OUT/start_step_calibration.json --plot $OUT/start_step_calibration.png
python scripts/bundle_checkpoint.py $CKPT $CKPT --name upsr-default-video --start-steps $U/start_steps.json
python scripts/plot_training.py $P1 $U -o $OUT/training_curves.png
python scripts/holdout_choice.py checkpoints/upsr-small-bicubic.safetensors $CKPT \
    --threads 2 --json $OUT/holdout_choice.json
