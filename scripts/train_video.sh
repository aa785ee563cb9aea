#!/usr/bin/env bash
# Reproduces the video-recipe candidate checkpoints/upsr-small-video.safetensors (CPU, 2 cores): g
# (configs/g-video.yaml), then the denoiser with g frozen (configs/upsr-video.yaml), the bundle, the start-step
# calibration on held-out training-pool crops (carried inside the checkpoint), the curves and the quality bars. Run from the repo root with ../shared beside it. Every stage resumes exactly where it
# stopped when re-run (training state in runs/<name>/state).
set -euo pipefail
# The run as it happened (CPU time came in session-sized pieces; each line resumes the same run directory):
# g's first 700 steps ran under a 4500-step schedule, then to 3000 steps; the denoiser trained 2000 steps on
# that g (kept as runs/g-video-3000.safetensors). g then continued to 8000 steps (the cosine schedule restarted at
# its step-3000 value of an 8000-step run) and the denoiser was fine-tuned on the new g to 3000 steps (likewise).
python -m training g --config configs/g-video.yaml --set steps=4500 --until 700
python -m training g --config configs/g-video.yaml --set steps=3000
cp runs/g-video/model.safetensors runs/g-video-3000.safetensors
python -m training upsr --config configs/upsr-video.yaml --set steps=2000 --set aux_checkpoint=runs/g-video-3000.safetensors
python -m training g --config configs/g-video.yaml
python -m training upsr --config configs/upsr-video.yaml
# Session 5: both fine-tuned with the blur stated in LR pixels and half the crops blurred / coded (why: the
# configs' headers); each starts from the weights above (init_from) in its own run directory.
python -m training g --config configs/g-video-ft.yaml
python -m training upsr --config configs/upsr-video-ft.yaml
# Sessions 5-6: g continued on a milder mix (codec on 35% of the crops, noise on 20%; stopped at step 3500 by the
# end of session 5 and resumed from its committed state), then the denoiser fine-tuned on that g with its mix.
python -m training g --config configs/g-video-mild.yaml
python -m training upsr --config configs/upsr-video-mild.yaml
# Sessions 6-7: g continued 8000 more steps on the same mix (stopped at 4700 and 6700 by session ends, resumed
# from its committed state), then the denoiser fine-tuned on it with half its samples at the sampler's start
# state (start_prob, see configs/upsr-video-start.yaml).
python -m training g --config configs/g-video-mild2.yaml
python -m training upsr --config configs/upsr-video-start.yaml
CKPT=checkpoints/upsr-small-video.safetensors
OUT=reports/video_candidate
python scripts/bundle_checkpoint.py runs/upsr-video-start/model.safetensors $CKPT --name upsr-small-video \
    --note "g: configs/g-video.yaml (8000 steps) + g-video-ft.yaml (3000) + g-video-mild.yaml (6000) + g-video-mild2.yaml (8000); denoiser: configs/upsr-video.yaml (3000) + upsr-video-ft.yaml (1000) + upsr-video-mild.yaml (1500) + upsr-video-start.yaml (1500); scripts/train_video.sh"
python scripts/calibrate_start_step.py --checkpoint $CKPT --degradation-config configs/upsr-video-start.yaml \
    --out runs/upsr-video-start/start_steps.json --report $OUT/start_step_calibration.json --plot $OUT/start_step_calibration.png
python scripts/bundle_checkpoint.py $CKPT $CKPT --name upsr-small-video --start-steps runs/upsr-video-start/start_steps.json
python scripts/plot_training.py runs/g-video runs/g-video-ft runs/g-video-mild runs/g-video-mild2 runs/upsr-video runs/upsr-video-ft runs/upsr-video-mild runs/upsr-video-start -o $OUT/training_curves.png
python scripts/holdout_choice.py upsr_video/weights/upsr-small-default.safetensors $CKPT --threads 2 --json $OUT/holdout_choice.json
python scripts/quality_bars.py --checkpoint $CKPT --json $OUT/quality_bars.json || true
