"""HR training patches from image folders and videos, reproducible from (seed, index).

Sources are folders (their png/jpg/... images and mp4/mkv/... videos, not recursive), single files, or
glob patterns. Videos contribute a few evenly spaced frames each, decoded once with decord at
construction and kept as uint8 arrays, so sampling a patch never touches a decoder. Images are read on
first use and cached (uint8 HWC RGB).

Evaluation sets (Set5, Set14, Vid4) are refused as sources: training on them would inflate every
benchmark figure. `holdout_split` keeps a fixed share of the training images out for validation.
"""
from __future__ import annotations

import fnmatch
import glob
from pathlib import Path
from typing import Iterable, Optional, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from upsr_video.diffusion.sampler import derive_seed

from .degradations import DegradationConfig, degrade

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v")
EVAL_SET_NAMES = ("set5", "set14", "vid4")


# -- source discovery -----------------------------------------------------------------------------


def _is_eval_component(part: str) -> bool:
    p = part.lower()
    for name in EVAL_SET_NAMES:
        if p == name or (p.startswith(name) and not p[len(name)].isalnum()):  # "Set14", "set14_hr", "vid4.zip"
            return True
    return False


def check_not_eval_set(path: str | Path) -> None:
    """ValueError if a path component (as written or resolved) names an evaluation set."""
    p = Path(path)
    parts = list(p.parts)
    try:
        parts += list(p.resolve().parts)
    except OSError:
        pass
    bad = [q for q in parts if _is_eval_component(q)]
    if bad:
        raise ValueError(f"refusing evaluation set {bad[0]!r} as training data: {path}")


def _excluded(path: Path, patterns: Sequence[str]) -> bool:
    s = path.as_posix()
    return any(fnmatch.fnmatch(path.name, pat) or fnmatch.fnmatch(s, pat) for pat in patterns)


def expand_sources(
    sources: Iterable[str | Path], exclude_patterns: Sequence[str] = ()
) -> tuple[list[Path], list[Path]]:
    """(images, videos) from folders, files and glob patterns, each list sorted; refuses eval sets.

    exclude_patterns are fnmatch patterns tried against the file name and the full path.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    images: set[Path] = set()
    videos: set[Path] = set()
    for src in sources:
        check_not_eval_set(src)
        s = str(src)
        if any(ch in s for ch in "*?["):
            files = [Path(f) for f in sorted(glob.glob(s))]
            if not files:
                raise FileNotFoundError(f"no files match {s}")
        else:
            p = Path(s)
            if not p.exists():
                raise FileNotFoundError(f"training source not found: {s}")
            if p.is_dir():
                files = sorted(f for f in p.iterdir() if f.is_file())
            else:
                ext = p.suffix.lower()
                if ext not in IMAGE_EXTS + VIDEO_EXTS:
                    raise ValueError(f"unsupported training file type {ext!r}: {s}")
                files = [p]
        for f in files:
            ext = f.suffix.lower()
            if ext not in IMAGE_EXTS + VIDEO_EXTS or _excluded(f, exclude_patterns):
                continue
            check_not_eval_set(f)
            (images if ext in IMAGE_EXTS else videos).add(f)
    return sorted(images), sorted(videos)


def holdout_split(
    sources: Iterable[str | Path], every: Optional[int] = 20, exclude_patterns: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """(training sources, validation images): images 0, every, 2*every, ... of the sorted image list are
    held out; all videos and the other images train. every None/0 holds nothing out.

    The training list is explicit files, so it can be passed straight to HRPatchDataset.
    """
    images, videos = expand_sources(sources, exclude_patterns)
    if every is not None and every < 0:
        raise ValueError(f"holdout every must be >= 0, got {every}")
    if not every:
        return [str(p) for p in images + videos], []
    if every == 1:
        raise ValueError("holdout every=1 would hold out every image")
    val = [str(p) for i, p in enumerate(images) if i % every == 0]
    train = [str(p) for i, p in enumerate(images) if i % every != 0]
    return train + [str(p) for p in videos], val


# -- reading --------------------------------------------------------------------------------------


def _read_rgb(path: str | Path) -> np.ndarray:
    """HWC RGB as stored (uint8 or uint16); gray is replicated, alpha dropped."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError(f"cannot read image: {path}")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[..., :3]
    elif arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"unsupported image sample type {arr.dtype}: {path}")
    return np.ascontiguousarray(arr[..., ::-1])


def read_image_u8(path: str | Path) -> np.ndarray:
    """HWC uint8 RGB (16-bit images rounded down to 8 bit)."""
    arr = _read_rgb(path)
    if arr.dtype == np.uint16:
        arr = np.round(arr / 257.0).astype(np.uint8)
    return arr


def load_image(path: str | Path) -> Tensor:
    """CHW float32 RGB in [0,1] (keeps 16-bit precision)."""
    arr = _read_rgb(path)
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    return torch.from_numpy(arr.astype(np.float32) / scale).permute(2, 0, 1).contiguous()


def video_frame_indices(num_frames: int, k: int) -> list[int]:
    """k evenly spaced frame indices spanning the video (all frames if it has fewer)."""
    if num_frames <= 0 or k <= 0:
        return []
    if k >= num_frames:
        return list(range(num_frames))
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, k)})


def read_video_frames(path: str | Path, k: int) -> tuple[list[int], np.ndarray]:
    """(frame indices, [k,H,W,3] uint8 RGB) of k evenly spaced frames, decoded with decord."""
    import decord

    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as e:  # decord raises its own DECORDError for unreadable files
        raise ValueError(f"cannot decode video {path}: {e}") from None
    idx = video_frame_indices(len(vr), k)
    if not idx:
        raise ValueError(f"video has no frames: {path}")
    frames = vr.get_batch(idx).asnumpy()
    return idx, np.ascontiguousarray(frames)


# -- patches --------------------------------------------------------------------------------------


def pad_to(arr: np.ndarray, patch: int) -> np.ndarray:
    """Reflect-pad an HWC array at the bottom/right up to patch x patch (edge copy for 1-px sides)."""
    h, w = arr.shape[:2]
    ph, pw = max(0, patch - h), max(0, patch - w)
    if ph == 0 and pw == 0:
        return arr
    mode = "reflect" if min(h, w) > 1 else "edge"
    return np.pad(arr, ((0, ph), (0, pw), (0, 0)), mode=mode)


class HRPatchDataset(torch.utils.data.Dataset):
    """Random HR patches (float32 CHW RGB in [0,1], patch x patch) from images and video frames.

    Items are the images (sorted) followed by the cached video frames. `get(index, seed)` is a pure
    function of (dataset seed, seed, index): crop position, horizontal flip and rot90 come from a
    generator seeded with them. `ds[i]` (for DataLoader use) draws from (seed, epoch, i) on item
    i % len(ds); call set_epoch(e) to get new crops per epoch.
    """

    def __init__(
        self,
        sources: Iterable[str | Path],
        patch: int = 256,
        seed: int = 0,
        video_frames_per_clip: int = 8,
        exclude_patterns: Sequence[str] = (),
        augment: bool = True,
        cache_images: bool = True,
    ):
        if int(patch) != patch or patch < 1:
            raise ValueError(f"patch must be a positive integer, got {patch!r}")
        if video_frames_per_clip < 0:
            raise ValueError(f"video_frames_per_clip must be >= 0, got {video_frames_per_clip}")
        self.patch = int(patch)
        self.seed = int(seed)
        self.augment = augment
        self.cache_images = cache_images
        self.epoch = 0
        self.images, self.videos = expand_sources(sources, exclude_patterns)
        self.video_items: list[tuple[Path, int]] = []  # (video, frame index) per cached frame
        frames: list[np.ndarray] = []
        for v in self.videos if video_frames_per_clip else []:
            idx, arr = read_video_frames(v, video_frames_per_clip)
            self.video_items += [(v, i) for i in idx]
            frames += list(arr)
        self.video_frames = frames
        if len(self) == 0:
            raise ValueError("no training images or video frames found in the sources")
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.images) + len(self.video_frames)

    def describe(self, index: int) -> str:
        """Human-readable origin of an item (file, or video@frame)."""
        if index < len(self.images):
            return str(self.images[index])
        v, f = self.video_items[index - len(self.images)]
        return f"{v}@{f}"

    def array(self, index: int) -> np.ndarray:
        """The full HWC uint8 RGB picture behind an item."""
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range 0..{len(self) - 1}")
        if index >= len(self.images):
            return self.video_frames[index - len(self.images)]
        if index in self._cache:
            return self._cache[index]
        arr = read_image_u8(self.images[index])
        if self.cache_images:
            self._cache[index] = arr
        return arr

    def crop_params(self, index: int, seed: int) -> tuple[int, int, bool, int]:
        """(top, left, hflip, rot90 turns) for item `index` under `seed`, on the padded picture."""
        h, w = self.array(index).shape[:2]
        gen = torch.Generator().manual_seed(derive_seed("hrpatch", self.seed, int(seed), int(index)))
        hp, wp = max(h, self.patch), max(w, self.patch)
        top = int(torch.randint(hp - self.patch + 1, (), generator=gen))
        left = int(torch.randint(wp - self.patch + 1, (), generator=gen))
        hflip = bool(torch.rand((), generator=gen) < 0.5)
        rot = int(torch.randint(4, (), generator=gen))
        if not self.augment:
            hflip, rot = False, 0
        return top, left, hflip, rot

    def get(self, index: int, seed: int) -> Tensor:
        """Patch [3, patch, patch] float32 in [0,1] of item `index`, determined by (dataset seed, seed, index)."""
        top, left, hflip, rot = self.crop_params(index, seed)
        arr = pad_to(self.array(index), self.patch)
        crop = arr[top : top + self.patch, left : left + self.patch]
        t = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255.0
        if hflip:
            t = t.flip(-1)
        if rot:
            t = torch.rot90(t, rot, dims=(-2, -1))
        return t.contiguous()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> Tensor:
        if index < 0:
            raise IndexError("negative dataset index")
        return self.get(index % len(self), derive_seed("epoch", self.epoch, int(index)))


def make_batch(
    batch_hr: Tensor, scale: float, degradation_cfg: DegradationConfig, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """(lr, hr): LR [N,3,round(H/scale),round(W/scale)] in [0,1] degraded from the HR batch, and the HR.

    The HR is returned unchanged; for non-integer scales H is not exactly scale * h, so callers resize
    the network output (or y0) to the HR size.
    """
    if not isinstance(batch_hr, Tensor) or batch_hr.dim() != 4 or batch_hr.shape[1] != 3:
        raise ValueError(f"make_batch expects HR [N,3,H,W], got {tuple(getattr(batch_hr, 'shape', ()))}")
    return degrade(batch_hr, scale, degradation_cfg, generator), batch_hr


class StepBatches(torch.utils.data.Dataset):
    """Item k is the training batch of step k: (lr, hr) in [0,1] and the scale, all drawn from (seed, k).

    Being a pure function of the step, batches can be built ahead by loader processes in any order and the run
    stays exactly the one a single process gives (and a resumed run replays the same batches).
    """

    def __init__(self, dataset: HRPatchDataset, degradation_cfg: DegradationConfig, seed: int, batch: int,
                 scales: tuple[float, float]):
        self.dataset, self.degradation_cfg, self.seed, self.batch, self.scales = dataset, degradation_cfg, seed, batch, scales

    def __len__(self) -> int:
        return 1 << 62  # any step

    def __getitem__(self, step: int) -> tuple[Tensor, Tensor, float]:
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "batch", step))
        idx = torch.randint(len(self.dataset), (self.batch,), generator=gen).tolist()
        hr = torch.stack([self.dataset.get(i, derive_seed(self.seed, "crop", step, j)) for j, i in enumerate(idx)])
        lo, hi = self.scales
        scale = lo if hi <= lo else float(lo + (hi - lo) * torch.rand((), generator=gen))
        lr, hr = make_batch(hr, scale, self.degradation_cfg, gen)
        return lr, hr, scale
