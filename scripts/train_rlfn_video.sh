#!/usr/bin/env bash
# The RLFN video candidate checkpoints/upsr-rlfn-video.safetensors: g = RLFN on the output grid started from its
# authors' x4 weights (configs/g-rlfn-video.yaml), the video candidate's denoiser fine-tuned on it
# (configs/upsr-rlfn-video.yaml; that denoiser comes from scripts/train_video.sh), then the bundle, the start-step
# calibration on held-out training-pool crops (carried inside the checkpoint), the curves, the held-out choice
# and the quality bars. Run from the repo root with ../shared beside it:
#   bash scripts/train_rlfn_video.sh        # trains both on this CPU (runs/g-rlfn-video, runs/upsr-rlfn-video;
#                                           # every stage resumes exactly where it stopped when re-run)
#   bash scripts/train_rlfn_video.sh gpu    # the stages after training, on runs/g-rlfn-video-gpu and
#                                           # runs/upsr-rlfn-video-gpu from scripts/gpu_train_rlfn.sh (how the
#                                           # committed checkpoint was made)
set -euo pipefail
if [ "${1:-}" = gpu ]; then
    G=runs/g-rlfn-video-gpu U=runs/upsr-rlfn-video-gpu
    NOTE="scripts/gpu_train_rlfn.sh on an H200: configs/g-rlfn-video.yaml 200 s, configs/upsr-rlfn-video.yaml 270 s"
else
    G=runs/g-rlfn-video U=runs/upsr-rlfn-video
    NOTE="configs/g-rlfn-video.yaml then configs/upsr-rlfn-video.yaml on this CPU"
    python -m training g --config configs/g-rlfn-video.yaml
    python -m training upsr --config configs/upsr-rlfn-video.yaml
fi
CKPT=checkpoints/upsr-rlfn-video.safetensors
OUT=reports/rlfn_candidate
mkdir -p $OUT
python scripts/bundle_checkpoint.py $U/model.safetensors $CKPT --name upsr-rlfn-video \
    --note "g: RLFN x4 (authors' weights) lifted to the output grid; denoiser: the upsr-small-video denoiser fine-tuned on it; $NOTE; scripts/train_rlfn_video.sh"
python scripts/calibrate_start_step.py --checkpoint $CKPT --degradation-config configs/upsr-rlfn-video.yaml \
    --out $U/start_steps.json --report $OUT/start_step_calibration.json --plot $OUT/start_step_calibration.png
python scripts/bundle_checkpoint.py $CKPT $CKPT --name upsr-rlfn-video --start-steps $U/start_steps.json
python scripts/plot_training.py $G $U -o $OUT/training_curves.png
python scripts/holdout_choice.py upsr_video/weights/upsr-small-default.safetensors checkpoints/upsr-small-video.safetensors $CKPT \
    --threads 2 --json $OUT/holdout_choice.json
python scripts/quality_bars.py --checkpoint $CKPT --json $OUT/quality_bars.json || true  # prints which bars fail
