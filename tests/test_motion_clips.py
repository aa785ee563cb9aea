"""Synthetic ground-truth motion (upsr_video.eval.motion_clips) on real pool images: frames are exact shifts,
the sprite is where its velocity puts it, and an independent flow estimator recovers both motions."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from upsr_video.eval.flow import dis_flow
from upsr_video.eval.motion_clips import HOLDOUT_MOTIONS, MotionSpec, fit_orientation, moving_clip

POOL = Path(__file__).resolve().parents[1].parent / "shared/data/images/train_hr"


def _img(name):
    return cv2.cvtColor(cv2.imread(str(POOL / name)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def images():
    return _img("bsd100_img_041_SRF_4_HR.png"), _img("bsd100_img_001_SRF_4_HR.png")  # 320x480, 480x320


def test_frames_are_exact_shifts_and_the_sprite_moves_with_its_velocity(images):
    bg, src = images
    spec = MotionSpec((4, 1), (-6, 2))
    clip = moving_clip(bg, src, spec, 10)
    assert len(clip) == 10 and all(f.shape == (256, 256, 3) and f.dtype == np.uint8 for f in clip)
    # background: frame t+1 at (y, x) is frame t at (y + 1, x + 4) wherever neither shows the sprite
    sh, sw = spec.sprite
    sx0, sy0 = (256 - sw) // 2 - (-6) * 9 // 2, (256 - sh) // 2 - 2 * 9 // 2
    for t in range(9):
        a, b = clip[t].astype(int), clip[t + 1].astype(int)
        cover = np.zeros((256, 256), bool)
        for k in (t, t + 1):
            x, y = sx0 - 6 * k, sy0 + 2 * k
            cover[max(y, 0) : y + sh, max(x, 0) : x + sw] = True
        shifted_cover = cover[1:, 4:] | cover[:-1, :-4]
        diff = np.abs(b[:-1, :-4] - a[1:, 4:])[~shifted_cover]
        assert diff.max() == 0
        # the sprite's centre pixel is the source's centre pixel
        cy, cx = sy0 + 2 * (t + 1) + sh // 2, sx0 - 6 * (t + 1) + sw // 2
        oy, ox = (src.shape[0] - sh) // 2, (src.shape[1] - sw) // 2
        assert (clip[t + 1][cy, cx] == src[oy + sh // 2, ox + sw // 2]).all()


def test_flow_recovers_camera_and_sprite_motion(images):
    bg, src = images
    spec = MotionSpec((3, -2), (-5, 3))
    clip = moving_clip(bg, src, spec, 4)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip]
    fl = dis_flow(grey[1], grey[2])  # on frame 1's grid, into frame 2
    sh, sw = spec.sprite
    sx, sy = (256 - sw) // 2 - (-5) * 3 // 2 - 5, (256 - sh) // 2 - 3 * 3 // 2 + 3
    inner = np.zeros((256, 256), bool)
    inner[sy + 16 : sy + sh - 16, sx + 24 : sx + sw - 24] = True
    far = np.ones((256, 256), bool)
    far[max(sy - 24, 0) : sy + sh + 24, max(sx - 24, 0) : sx + sw + 24] = False
    far[:24], far[-24:], far[:, :24], far[:, -24:] = False, False, False, False
    # content moves by minus the camera's velocity; the sprite by its own
    assert np.allclose(np.median(fl[far], 0), (-3, 2), atol=0.25)
    assert np.allclose(np.median(fl[inner], 0), (-5, 3), atol=0.25)


def test_orientation_and_size_checks(images):
    bg, src = images
    assert fit_orientation(MotionSpec((11, 3), (-9, 0)), bg.shape[:2]).camera == (11, 3)  # landscape: as given
    tall = src  # 480x320 (H x W)
    spec = fit_orientation(MotionSpec((11, 3), (-9, 0)), tall.shape[:2])
    assert spec.camera == (3, 11) and spec.sprite_velocity == (0, -9) and spec.sprite == (96, 72)
    assert len(moving_clip(tall, bg, spec, 10)) == 10
    with pytest.raises(ValueError, match="too small"):
        moving_clip(tall, bg, MotionSpec((11, 3), (-9, 0)), 10)
    for m in HOLDOUT_MOTIONS:  # every held-out motion fits a 480x320 image either way round
        for shape_img in (bg, tall):
            assert len(moving_clip(shape_img, src, fit_orientation(m, shape_img.shape[:2]), 10)) == 10
