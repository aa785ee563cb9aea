"""HR patch dataset: eval-set refusal, patch geometry vs an independent reader, seeds, video frames, holdout."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from training.data import (
    HRPatchDataset,
    check_not_eval_set,
    expand_sources,
    holdout_split,
    load_image,
    make_batch,
    video_frame_indices,
)
from training.degradations import DegradationConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TRAIN_HR = SHARED / "data" / "images" / "train_hr"
VIDEO = SHARED / "data" / "video" / "realshort.mp4"
FEW = [TRAIN_HR / "bsd100_img_002_SRF_4_HR.png", TRAIN_HR / "urban100_img_004_SRF_4_HR.png"]


def _pil(path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))


def _dihedral(t: torch.Tensor) -> list[torch.Tensor]:
    return [torch.rot90(u, k, (-2, -1)) for u in (t, t.flip(-1)) for k in range(4)]


def test_refuses_evaluation_sets():
    for bad in [
        SHARED / "data" / "images" / "Set14",
        SHARED / "data" / "images" / "Set5" / "img_001_SRF_4_HR.png",
        SHARED / "data" / "vid4" / "GT" / "calendar",
        "somewhere/set14/x.png",  # case-insensitive, checked before looking at the disk
        "data/VID4_frames/",
    ]:
        with pytest.raises(ValueError, match="evaluation set"):
            HRPatchDataset([TRAIN_HR / "bsd100_img_002_SRF_4_HR.png", bad], patch=64)
        with pytest.raises(ValueError, match="evaluation set"):
            holdout_split([bad])
    with pytest.raises(ValueError, match="evaluation set"):  # via a glob that reaches into Set14
        expand_sources([str(SHARED / "data" / "images" / "*" / "*_SRF_4_HR.png")])
    check_not_eval_set("data/Set50/img.png")  # only whole names count
    check_not_eval_set("data/myset14photos/img.png")


def test_missing_source_and_empty():
    with pytest.raises(FileNotFoundError):
        HRPatchDataset([TRAIN_HR / "no_such.png"])
    with pytest.raises(ValueError, match="no training images"):
        HRPatchDataset([TRAIN_HR], exclude_patterns=["*.png"])


def test_patch_size_and_content_match_independent_reader():
    ds = HRPatchDataset(FEW, patch=96, seed=1, augment=False)
    assert len(ds) == 2 and ds.images == sorted(FEW)
    for i in range(2):
        ref = torch.from_numpy(_pil(ds.images[i])).permute(2, 0, 1).float() / 255
        for s in range(3):
            p = ds.get(i, s)
            assert p.shape == (3, 96, 96) and p.dtype == torch.float32
            top, left, _, _ = ds.crop_params(i, s)
            assert torch.equal(p, ref[:, top : top + 96, left : left + 96])
    assert torch.equal(load_image(FEW[0]), torch.from_numpy(_pil(FEW[0])).permute(2, 0, 1).float() / 255)


def test_augmentation_uses_flips_and_rotations():
    ds = HRPatchDataset(FEW[:1], patch=80, seed=3)
    ref = torch.from_numpy(_pil(FEW[0])).permute(2, 0, 1).float() / 255
    used = set()
    for s in range(40):
        p = ds.get(0, s)
        top, left, hflip, rot = ds.crop_params(0, s)
        crop = ref[:, top : top + 80, left : left + 80]
        matches = [j for j, d in enumerate(_dihedral(crop)) if torch.equal(p, d)]
        assert matches, "patch is not a flip/rotation of the crop"
        used.add(matches[0])
    assert len(used) >= 6


def test_reflect_pad_when_image_smaller_than_patch():
    ds = HRPatchDataset(FEW[:1], patch=600, seed=0, augment=False)  # image is 480x320 (portrait 320 wide)
    img = torch.from_numpy(_pil(FEW[0])).permute(2, 0, 1).float() / 255
    h, w = img.shape[-2:]
    p = ds.get(0, 0)
    assert p.shape == (3, 600, 600) and ds.crop_params(0, 0)[:2] == (0, 0)
    assert torch.equal(p[:, :h, :w], img)
    for j in (0, 5, 100):  # bottom/right mirror without repeating the edge row/column
        assert torch.equal(p[:, h + j, :w], img[:, h - 2 - j])
        assert torch.equal(p[:, :h, w + j], img[:, :, w - 2 - j])


def test_deterministic_from_seed_and_index():
    a = HRPatchDataset(FEW, patch=64, seed=5)
    b = HRPatchDataset(FEW, patch=64, seed=5)
    c = HRPatchDataset(FEW, patch=64, seed=6)
    assert torch.equal(a.get(1, 42), b.get(1, 42))
    assert torch.equal(a[7], b[7])
    assert not torch.equal(a.get(1, 42), c.get(1, 42))
    assert not torch.equal(a.get(1, 42), a.get(1, 43))
    assert not torch.equal(a[1], a[3])  # same item (3 % 2), another crop
    before = a[1]
    a.set_epoch(1)
    assert not torch.equal(a[1], before)


def test_video_frames_included():
    ds = HRPatchDataset(FEW + [VIDEO], patch=128, seed=0, video_frames_per_clip=4)
    assert len(ds) == 2 + 4 and ds.videos == [VIDEO]
    assert video_frame_indices(36, 4) == [0, 12, 23, 35]
    assert [f for _, f in ds.video_items] == [0, 12, 23, 35]
    with av.open(str(VIDEO)) as c:
        ref = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(ref) == 36
    for j, (_, idx) in enumerate(ds.video_items):
        frame = ds.video_frames[j]
        assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
        mse = [np.mean((frame.astype(float) - r) ** 2) for r in ref]
        assert int(np.argmin(mse)) == idx and 10 * np.log10(255**2 / max(mse[idx], 1e-9)) > 40
        p = ds.get(2 + j, 9)
        top, left, _, _ = ds.crop_params(2 + j, 9)
        crop = torch.from_numpy(frame[top : top + 128, left : left + 128].copy()).permute(2, 0, 1).float() / 255
        assert any(torch.equal(p, d) for d in _dihedral(crop))
    assert ds.describe(5).endswith("realshort.mp4@35")


def test_holdout_split_on_train_hr():
    train, val = holdout_split([TRAIN_HR, VIDEO], every=20)
    images = sorted(TRAIN_HR.glob("*.png"))
    assert len(images) == 110
    assert len(val) == 6 and val == [str(images[i]) for i in range(0, 110, 20)]
    assert not set(train) & set(val)
    assert set(train) | set(val) == {str(p) for p in images} | {str(VIDEO)}
    assert holdout_split([TRAIN_HR, VIDEO], every=20) == (train, val)
    assert holdout_split([TRAIN_HR], every=0)[1] == []
    # the training list feeds the dataset directly and keeps validation images out
    ds = HRPatchDataset(
        [p for p in train if p.endswith(".png")][:3] + [VIDEO], patch=64, video_frames_per_clip=2
    )
    assert not {str(p) for p in ds.images} & set(val)


def test_exclude_patterns():
    imgs, vids = expand_sources([TRAIN_HR], exclude_patterns=["urban100_*"])
    assert len(imgs) == 100 and all(p.name.startswith("bsd100_") for p in imgs) and vids == []


def test_make_batch_shapes():
    ds = HRPatchDataset(FEW, patch=96, seed=0)
    hr = torch.stack([ds.get(i % 2, i) for i in range(3)])
    gen = torch.Generator().manual_seed(0)
    lr, hr2 = make_batch(hr, 3.0, DegradationConfig(), gen)
    assert lr.shape == (3, 3, 32, 32) and hr2 is hr
    assert float(lr.min()) >= 0 and float(lr.max()) <= 1
    lr_b, _ = make_batch(hr, 4.0, DegradationConfig(mode="bicubic"), gen)
    assert lr_b.shape == (3, 3, 24, 24)
    with pytest.raises(ValueError):
        make_batch(hr[0], 4.0, DegradationConfig(), gen)
