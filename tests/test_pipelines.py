"""Ray pipelines: frame-exact segments, the resumable manifest, and fault tolerance on a 2-CPU local Ray.

The distributed outputs are compared with the local single-process driver (`upscale_video`) frame by frame
after decoding. Parts are encoded losslessly (libx264 --crf 0) so any difference is a real difference in the
up-scaled frames, not encoder noise between differently cut GOPs. The model is a tiny random diffusion
checkpoint run with one sampling step at the target size: cheap, yet every frame depends on its shot's noise
and on the uncertainty of the frames before it, so a segment that started without its context frames, or with
the wrong shot, would give different frames (a g-only checkpoint could not tell). One torch thread everywhere:
on a loaded 2-core machine several torch threads per process are much slower, not faster.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import upsr_video.cli  # noqa: F401  (first: its plugin loader imports pipelines.cli)
from click.testing import CliRunner

from pipelines.actors import FAULT_MARKER_ENV, MAX_RESTARTS, MAX_TASK_RETRIES, SEGMENT_LOG_ENV, actor_options
from pipelines.archive import check_dirs, plan_outputs, run_archive, scan
from pipelines.manifest import DONE, PENDING, Manifest, ManifestError
from pipelines.runner import check_reachable, run_distributed, work_dir_for
from pipelines.segments import make_segments, split_frames
from upsr_video.eval.fidelity import psnr_rgb
from upsr_video.process import UpscaleError, UpscaleOptions
from upsr_video.upscale import upscale_video

from tinymodel import tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REALSHORT = SHARED / "data" / "video" / "realshort.mp4"
BIKES = SHARED / "data" / "video" / "bikes.mp4"
W, H = 64, 48
CUT = 20  # clip A: realshort frames [0, 20), then bikes frames


# -- helpers ---------------------------------------------------------------------------------------------------
def _small_frames(path, n):
    import cv2

    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            out.append(cv2.resize(f.to_ndarray(format="rgb24"), (W, H), interpolation=cv2.INTER_AREA))
            if len(out) == n:
                break
    return out


def _write_clip(path, frames, audio_from=None):
    """H.264 clip of `frames` (29.97 fps, time base 1/90000); optional AAC copied from another file."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=Fraction(30000, 1001), options={"crf": "12"})
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        src = aud = None
        if audio_from is not None:
            src = av.open(str(audio_from))
            aud = out.add_stream_from_template(src.streams.audio[0])
        for f in frames:
            for p in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if src is not None:
            for p in src.demux(src.streams.audio[0]):
                if p.dts is not None:
                    p.stream = aud
                    out.mux(p)
            src.close()


def _decode(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames, times = [], []
        for f in c.decode(s):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(f.pts * s.time_base)
        has_audio = bool(c.streams.audio)
    return np.stack(frames), times, has_audio


# The split-independence checks below are bit for bit, which an unanchored mode promises; so they pin `flow`.
# The default (anchored) mode matches across splits to >= 50 dB: test_default_mode_split_matches_local.
def _opts(ckpt, **kw):
    kw.setdefault("temporal", "flow")
    return UpscaleOptions(target=None, scale=2, checkpoint=str(ckpt), crf=0, preset="ultrafast", device="cpu",
                          steps=1, threads=1, **kw)


def _cli_args(ckpt):
    return ["--scale", "2", "--checkpoint", str(ckpt), "--crf", "0", "--preset", "ultrafast", "--device", "cpu",
            "--steps", "1", "--threads", "1", "--temporal", "flow"]


def _log(path):
    """The actors' log: [(kind, video name, start, stop, pid, t0, t1)]."""
    if not Path(path).exists():
        return []
    rows = []
    for ln in Path(path).read_text().splitlines():
        k, v, a, b, pid, t0, t1 = ln.split("\t")
        rows.append((k, Path(v).name if v else "", int(a) if a else None, int(b) if b else None, int(pid),
                     float(t0), float(t1)))
    return rows


# -- fixtures --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two small real-content clips (A has a scene cut and audio), a tiny diffusion checkpoint (random weights,
    perturbed so the denoiser matters), and the local driver's outputs as reference."""
    d = tmp_path_factory.mktemp("pipelines")
    a = _small_frames(REALSHORT, CUT) + _small_frames(BIKES, 36 - CUT)
    _write_clip(d / "a.mp4", a, audio_from=REALSHORT)
    _write_clip(d / "b.mp4", _small_frames(BIKES, 24))
    ckpt = tiny_checkpoint(d / "tiny.safetensors")
    ref = {}
    for name in ("a", "b"):
        out = d / f"{name}_local.mp4"
        upscale_video(str(d / f"{name}.mp4"), str(out), _opts(ckpt))
        ref[name] = _decode(out)
    return {"dir": d, "ckpt": ckpt, "ref": ref}


@pytest.fixture(scope="module")
def cluster():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 1024 * 1024,
             ignore_reinit_error=True)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


# -- segments (no Ray) -----------------------------------------------------------------------------------------
def test_split_covers_every_frame_once_and_snaps_to_cuts():
    for n, L in [(1, 5), (36, 7), (36, 10), (1000, 240), (241, 240)]:
        s = split_frames(n, L)
        assert s[0][0] == 0 and s[-1][1] == n
        assert all(a < b for a, b in s) and all(s[i][1] == s[i + 1][0] for i in range(len(s) - 1))
        assert len(s) == -(-n // L) and max(b - a for a, b in s) <= L
    # 36 frames / 10 -> 4 segments, nominal boundaries 9, 18, 27; a cut at 20 is within 10 // 4 = 2 of 18
    assert split_frames(36, 10, cuts=[0, 20]) == [(0, 9), (9, 20), (20, 27), (27, 36)]
    assert split_frames(36, 10, cuts=[0, 22]) == [(0, 9), (9, 18), (18, 27), (27, 36)]  # too far: kept
    assert split_frames(36, 10, cuts=[0, 22], tolerance=4)[1:3] == [(9, 22), (22, 27)]
    # snapping never leaves a sliver next to the end
    assert split_frames(40, 20, cuts=[38], tolerance=19) == [(0, 20), (20, 40)]
    segs = make_segments("v.mp4", 36, 10)
    assert [s.index for s in segs] == [0, 1, 2, 3] and sum(s.frames for s in segs) == 36
    with pytest.raises(ValueError):
        split_frames(10, 0)


# -- manifest (no Ray) -----------------------------------------------------------------------------------------
def test_manifest_survives_a_crash_and_resets_on_new_fingerprint(tmp_path):
    m = Manifest(tmp_path / "m.sqlite")
    m.ensure_video("v", "in.mp4", "out.mp4", "fp1")
    assert m.begin_attempt("v") == 1
    m.set_plan("v", 30, 1.0, [0, 12], [(0, 12), (12, 30)])
    m.segment_started("v", 0)
    m.segment_done("v", 0, "p0.mkv", 12, 0.5)
    m.segment_started("v", 1)  # the driver dies here
    with pytest.raises(ManifestError, match="another run"):  # one driver per target while it lives
        Manifest(tmp_path / "m.sqlite")
    del m  # no close: what a SIGKILL leaves (the kernel drops the lock with the process's descriptors)
    m = Manifest(tmp_path / "m.sqlite")
    rec = m.video("v")
    assert rec.state == PENDING and rec.attempts == 0  # the interrupted attempt is not a failure
    assert rec.cuts == [0, 12] and rec.split == [(0, 12), (12, 30)]
    segs = m.segments("v")
    assert [(s.state, s.part, s.frames) for s in segs] == [(DONE, "p0.mkv", 12), (PENDING, None, None)]
    assert m.ensure_video("v", "in.mp4", "out.mp4", "fp1").split == [(0, 12), (12, 30)]  # same inputs: kept
    rec = m.ensure_video("v", "in.mp4", "out.mp4", "fp2")  # input or options changed: start over
    assert rec.split is None and m.segments("v") == []
    m.close()
    Manifest(tmp_path / "m.sqlite").close()  # closed: free again


# -- archive layout (no Ray) -----------------------------------------------------------------------------------
def test_scan_mirrors_tree_and_refuses_writing_over_inputs(tmp_path):
    src = tmp_path / "in"
    for rel in ["a.mp4", "x/b.MKV", "x/y/c.webm", "x/y/c.avi", "d.m4v", "notes.txt", ".hidden/e.mp4", "x/.f.mp4"]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"")
    found = [p.relative_to(src).as_posix() for p in scan(src)]
    assert found == ["a.mp4", "d.m4v", "x/b.MKV", "x/y/c.avi", "x/y/c.webm"]
    pairs = plan_outputs(scan(src), src, tmp_path / "out", "auto")
    outs = [o.relative_to(tmp_path / "out").as_posix() for _, o in pairs]
    assert outs == ["a.mp4", "d.mp4", "x/b.mkv", "x/y/c.avi.mkv", "x/y/c.webm.mkv"]
    assert [o.name for _, o in plan_outputs(scan(src), src, tmp_path / "out", "mp4")][:3] == ["a.mp4", "d.mp4", "b.mp4"]
    with pytest.raises(UpscaleError, match="replace the originals"):
        check_dirs(src, src / "." / "")
    nested = src / "upscaled"
    (nested / "z").mkdir(parents=True)
    (nested / "z" / "old.mp4").write_bytes(b"")
    assert all("upscaled" not in p.parts for p in scan(src, exclude=nested))


# -- actor placement and Ray addresses (no Ray) ----------------------------------------------------------------
def test_actor_options_one_gpu_each_or_cpu_and_restartable(monkeypatch):
    import pipelines.actors as actors

    monkeypatch.setenv("UPSR_SOMETHING", "1")
    monkeypatch.setattr(actors, "cluster_gpus", lambda: 2)
    # one node with 16 CPUs and 2 GPUs, one CPU-only node: each GPU actor holds 8 CPUs (its torch, decoder and
    # encoder threads come from them); without Ray's node list, 1
    monkeypatch.setattr(actors.ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}},
                                                      {"Alive": True, "Resources": {"CPU": 4.0}}])
    opts, dev = actor_options("auto")
    assert (opts["num_gpus"], opts["num_cpus"], dev) == (1, 8, "auto")
    monkeypatch.setattr(actors.ray, "nodes", lambda: [])
    opts, dev = actor_options("auto")
    assert (opts["num_gpus"], opts["num_cpus"], dev) == (1, 1, "auto")
    assert opts["max_restarts"] == MAX_RESTARTS >= 1 and opts["max_task_retries"] == MAX_TASK_RETRIES >= 1
    assert opts["runtime_env"]["env_vars"]["UPSR_SOMETHING"] == "1"  # hooks reach workers on any node
    assert actor_options("cuda:1")[0]["num_gpus"] == 1
    assert actor_options("cpu") == ({**opts, "num_gpus": 0}, "cpu")  # --device cpu on a GPU cluster
    monkeypatch.setattr(actors, "cluster_gpus", lambda: 0)
    opts, dev = actor_options("auto")
    assert (opts["num_gpus"], opts["num_cpus"], dev) == (0, 1, "cpu")
    with pytest.raises(UpscaleError, match="no GPU"):
        actor_options("cuda")


def test_a_worker_computes_with_its_threads_in_torch_and_opencv(tmp_path):
    """A worker's threads (its CPUs in Ray, here given) bound OpenCV's threads too: the flow and the warps would
    otherwise use every core of the node in every actor."""
    import cv2

    from pipelines.actors import UpscaleWorker

    ckpt = str(tiny_checkpoint(tmp_path / "tiny.safetensors"))
    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        for n in (1, 2):
            w = UpscaleWorker(ckpt, "cpu", threads=n)
            assert (w.info()["threads"], torch.get_num_threads(), cv2.getNumThreads()) == (n, n, n)
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def test_unreachable_ray_address_fails_fast_in_one_line(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.time()
    with pytest.raises(UpscaleError, match="cannot join Ray"):
        check_reachable(f"127.0.0.1:{port}")
    assert time.time() - t0 < 10
    for bad in ("nohost", "host:", "host:99999"):
        with pytest.raises(UpscaleError, match="host:port"):
            check_reachable(bad)
    check_reachable("auto")  # Ray's to resolve


# -- Ray: split invariance, worker crash, driver crash ---------------------------------------------------------
def _segments_of(rows):
    return [(v, a, b) for k, v, a, b, *_ in rows if k == "segment"]


def _loads_of(rows):
    return [pid for k, _, _, _, pid, *_ in rows if k == "load"]


@pytest.mark.slow
def test_split_and_worker_count_do_not_change_frames(data, cluster, monkeypatch, tmp_path):
    """(c) `upscale --workers 1 --segment-frames 12` (a subprocess: a local Ray instance of its own, the default)
    and `--workers 2 --segment-frames 10` (in process, on the test's instance; one boundary snapped to the cut at
    20) both give exactly the local driver's frames, timestamps and audio. Each actor loads the model once and
    computes several segments."""
    d = data["dir"]
    ref_frames, ref_times, ref_audio = data["ref"]["a"]
    assert ref_audio and len(ref_frames) == 36 and ref_frames.shape[1:] == (2 * H, 2 * W, 3)
    expect_split = {12: [[0, 12], [12, 24], [24, 36]], 10: [[0, 9], [9, 20], [20, 27], [27, 36]]}
    for workers, seg in [(1, 12), (2, 10)]:
        out = tmp_path / f"a_w{workers}_s{seg}.mp4"
        log = tmp_path / f"w{workers}.log"
        args = ["upscale", str(d / "a.mp4"), "-o", str(out), *_cli_args(data["ckpt"]), "--workers", str(workers),
                "--segment-frames", str(seg), "--quiet"]
        if workers == 1:
            env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
            r = subprocess.run([sys.executable, "-m", "upsr_video", *args], cwd=REPO, capture_output=True, text=True,
                               timeout=300, env={**env, SEGMENT_LOG_ENV: str(log)})
            assert r.returncode == 0, r.stderr[-2000:]
            s = json.loads(r.stdout)
            assert s["ray_gcs"] != cluster and s["ray_address"] == "local"  # its own instance, not the test's
        else:
            monkeypatch.setenv(SEGMENT_LOG_ENV, str(log))
            r = CliRunner().invoke(upsr_video.cli.main, args)
            assert r.exit_code == 0, r.output
            s = json.loads(r.stdout)
            assert s["ray_gcs"] == cluster
        assert s["frames"] == 36 and s["split"] == expect_split[seg] and s["workers"] == workers
        assert s["shots"] == 2 and s["attempts"] == 1 and s["model"] == "UPSR"
        frames, times, audio = _decode(out)
        assert np.array_equal(frames, ref_frames)
        assert times == ref_times and audio
        assert not work_dir_for(out).exists()
        rows = _log(log)
        loads, segs = _loads_of(rows), [r for r in rows if r[0] == "segment"]
        assert len(loads) == len(set(loads)) == workers  # one model load per actor ...
        assert sorted((a, b) for _, _, a, b, *_ in segs) == [tuple(x) for x in expect_split[seg]]
        assert {r[4] for r in segs} <= set(loads)  # ... and every segment ran on a loaded actor
    with pytest.raises(UpscaleError, match="exists"):
        run_distributed(str(d / "a.mp4"), str(out), _opts(data["ckpt"]), workers=1, quiet=True)


@pytest.mark.slow
def test_default_mode_split_matches_local(data, cluster, tmp_path):
    """The default temporal mode re-uses the warped previous output, so a segment's first frames depend on frames
    before it: end to end, a Ray run split into 8-frame segments matches the local driver's (another split) to
    >= 50 dB PSNR per frame with the same timestamps, and the anchoring acts (the output is not the `flow`
    mode's). That the context frames are what makes the match is shown on the tiny model with a stronger
    anchor effect in tests/test_temporal.py (a cold segment start is measurably worse)."""
    assert UpscaleOptions().temporal == "flow-recurrent"
    d = data["dir"]
    local, ray_out = tmp_path / "a_local.mp4", tmp_path / "a_ray.mp4"
    o = _opts(data["ckpt"], temporal=UpscaleOptions().temporal)
    upscale_video(str(d / "a.mp4"), str(local), o)
    s = run_distributed(str(d / "a.mp4"), str(ray_out), o, workers=2, segment_frames=8, quiet=True)
    assert s["segments"] == 5
    (ref, ref_t, _), (got, got_t, _) = _decode(local), _decode(ray_out)
    assert got.shape == ref.shape and got_t == ref_t == data["ref"]["a"][1]
    psnr = [psnr_rgb(a, b) for a, b in zip(got, ref)]
    assert min(psnr) >= 50, psnr
    flow_ref = data["ref"]["a"][0]
    assert np.abs(ref.astype(int) - flow_ref.astype(int)).mean() > 0.5


@pytest.mark.slow
def test_worker_killed_mid_segment_job_completes_identically(data, cluster, monkeypatch, tmp_path):
    """(a) The first segment run kills its worker process (os._exit) after one frame; Ray restarts the actor
    (max_restarts, model reloaded) and retries the call (max_task_retries): the driver sees no failure at all,
    every segment is computed to the end exactly once, and the frames are the local driver's."""
    d = data["dir"]
    marker, log = tmp_path / "killed", tmp_path / "segments.log"
    monkeypatch.setenv(FAULT_MARKER_ENV, str(marker))
    monkeypatch.setenv(SEGMENT_LOG_ENV, str(log))
    out = tmp_path / "a_crash.mp4"
    s = run_distributed(str(d / "a.mp4"), str(out), _opts(data["ckpt"]), workers=2, segment_frames=8, quiet=True)
    assert marker.exists(), "no worker was killed: the fault hook did not fire"
    dead_pid = int(marker.read_text())
    rows = _log(log)
    segs = [r for r in rows if r[0] == "segment"]
    assert len(segs) == s["segments"] == 5 and len(set(_segments_of(rows))) == 5  # each once, to the end
    assert all(r[4] != dead_pid for r in segs)
    loads = _loads_of(rows)
    assert dead_pid in loads and len(loads) == len(set(loads)) == 3  # 2 actors + 1 restart, one load each
    assert s["attempts"] == 1  # Ray's retry absorbed the crash; the driver never had to retry the video
    assert not _alive(dead_pid)
    frames, times, _ = _decode(out)
    assert np.array_equal(frames, data["ref"]["a"][0]) and times == data["ref"]["a"][1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_crash.mp4", "killed", "segments.log"]


def test_replacement_that_cannot_be_placed_gets_no_work(data, cluster, monkeypatch, tmp_path):
    """A worker dies for good (no restarts) and its replacement can never be placed (as when its node is gone
    and nothing replaces it): the replacement is given no segment before it has started, so the survivor
    computes the lost segment and the rest, and the output is the local driver's. (Handing work to an actor
    that is still pending hung the node-loss test now and then.)"""
    import ray

    import pipelines.runner as runner
    from pipelines.actors import UpscaleWorker, make_workers

    d = data["dir"]
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_MARKER_ENV, str(marker))
    created = []

    def workers(n, checkpoint, device="auto", threads=0, compile=False):
        if not created:  # the pool: no restarts, no retried calls, so a killed worker is lost for good
            created.extend(make_workers(n, checkpoint, device, threads, max_restarts=0, max_task_retries=0))
            return list(created)
        unplaceable = ray.remote(UpscaleWorker).options(num_cpus=1, resources={"node-that-is-gone": 1})
        new = [unplaceable.remote(checkpoint, "cpu", threads, compile) for _ in range(n)]
        created.extend(new)
        return new

    monkeypatch.setattr(runner, "make_workers", workers)
    events = []
    out = tmp_path / "a_lost.mp4"
    s = run_distributed(str(d / "a.mp4"), str(out), _opts(data["ckpt"]), workers=2, segment_frames=8, quiet=True,
                        on_event=lambda ev, info: events.append(ev))
    assert marker.exists() and len(created) >= 3  # a worker was killed and a replacement was asked for
    assert s["attempts"] == 2 and events.count("retry") == 1  # the lost segment's failure, retried once
    frames, times, _ = _decode(out)
    assert np.array_equal(frames, data["ref"]["a"][0]) and times == data["ref"]["a"][1]


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # zombies are dead
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _parts(work):
    """{(start, stop): path} of the finished parts in a work folder (names part-<fp>-<idx>-<start>-<stop>.mkv)."""
    out = {}
    for p in work.glob("part-*.mkv"):
        a, b = p.stem.split("-")[-2:]
        out[(int(a), int(b))] = p
    return out


@pytest.mark.slow
def test_interrupted_video_resumes_and_changed_options_never_reuse_parts(data, cluster, monkeypatch, tmp_path):
    """A single-video run interrupted after its first finished segment keeps its parts; a rerun with other
    options (seed) computes everything anew from them, a rerun with the same options reuses what was finished."""
    d, ckpt = data["dir"], data["ckpt"]
    src, out = d / "b.mp4", tmp_path / "b.mp4"
    work = work_dir_for(out)
    log = tmp_path / "segments.log"
    monkeypatch.setenv(SEGMENT_LOG_ENV, str(log))
    ref = data["ref"]["b"][0]

    def stop_after_first_segment(ev, _d):
        if ev == "segment":
            raise KeyboardInterrupt

    def interrupted(opts):
        n = len(_log(log))
        with pytest.raises(KeyboardInterrupt):
            run_distributed(str(src), str(out), opts, workers=2, segment_frames=8, quiet=True,
                            on_event=stop_after_first_segment)
        # ray.kill is asynchronous: let the killed actors really be gone before looking at what they left
        pids, t0 = set(_loads_of(_log(log)[n:])), time.time()
        while pids and time.time() - t0 < 60:
            pids = {pid for pid in pids if _alive(pid)}
            time.sleep(0.05)
        assert not pids and not out.exists()
        return _parts(work)

    stale = interrupted(_opts(ckpt, seed=1))
    assert stale
    (a, b), p = next(iter(stale.items()))
    assert not np.array_equal(_decode(p)[0], ref[a:b])  # seed 1's parts differ from seed 0's frames
    s = run_distributed(str(src), str(out), _opts(ckpt), workers=2, segment_frames=8, quiet=True)
    assert s["segments_reused"] == 0 and s["frames_computed"] == 24
    assert np.array_equal(_decode(out)[0], ref) and not work.exists()

    out.unlink()
    n0 = len(_log(log))
    kept = interrupted(_opts(ckpt))
    first = set(_segments_of(_log(log)[n0:]))
    assert first and {(a, b) for _, a, b in first} <= set(kept)
    n1 = len(_log(log))
    s = run_distributed(str(src), str(out), _opts(ckpt), workers=2, segment_frames=8, quiet=True)
    again = set(_segments_of(_log(log)[n1:]))
    assert s["segments_reused"] >= 1 and s["frames_computed"] == 24 - sum(b - a for a, b in kept)
    assert not again & first  # finished segments were not recomputed
    assert np.array_equal(_decode(out)[0], ref) and not work.exists()


def _done_segments(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT video, idx, start, stop, finished, attempts FROM segments WHERE state='done'").fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_driver_killed_mid_archive_resumes_without_recomputing(data, cluster, tmp_path):
    """(b) `upsr-video batch` on a tree with two clips and two bad files, SIGKILLed once a segment is recorded,
    then rerun: finished segments are reused (never recomputed), the bad files are retried up to the limit and
    reported with a one-line reason, the outputs are byte for byte those of an uninterrupted run (and frame for
    frame the local driver's), the originals are untouched; a third run has nothing to do."""
    src, dst = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    a_bytes, b_bytes = (data["dir"] / "a.mp4").read_bytes(), (data["dir"] / "b.mp4").read_bytes()
    (src / "a.mp4").write_bytes(a_bytes)
    (src / "sub" / "b.mp4").write_bytes(b_bytes)
    (src / "sub" / "notes.mp4").write_text("not a video\n")
    (src / "truncated.mov").write_bytes(b_bytes[: len(b_bytes) // 2])
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in src.rglob("*") if p.is_file()}
    log = tmp_path / "segments.log"
    env = {**os.environ, SEGMENT_LOG_ENV: str(log)}
    cmd = [sys.executable, "-m", "upsr_video", "batch", str(src), str(dst), *_cli_args(data["ckpt"]), "--workers",
           "2", "--segment-frames", "8", "--max-attempts", "2", "--ray-address", cluster, "--quiet"]
    db = dst / ".upsr-manifest.sqlite"

    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0, done = time.time(), []
    while time.time() - t0 < 120 and proc.poll() is None:
        try:
            done = _done_segments(db) if db.exists() else []
        except sqlite3.Error:
            done = []
        if done:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert done, f"no segment finished before the kill: {proc.stderr.read().decode()[-2000:]}"
    done = _done_segments(db)  # what the manifest holds now
    assert len(done) < 5 + 3, "the run had finished: nothing was interrupted"
    n_logged = len(_log(log))

    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]  # the two bad files failed; everything else is done
    s = json.loads(r.stdout)
    assert sorted(v["input"] for v in s["done"]) == ["a.mp4", "sub/b.mp4"]
    fails = {f["input"]: f for f in s["failed"]}
    assert sorted(fails) == ["sub/notes.mp4", "truncated.mov"]
    assert all(f["reason"] and "\n" not in f["reason"] and f["attempts"] == 2 for f in fails.values()), fails
    assert s["segments_reused"] >= len(done) and s["frames"] == 36 + 24
    assert s["counts"] == {"done": 2, "failed": 2, "skipped": 0}
    assert abs(s["hours"] * 3600 - 60 * 1001 / 30000) < 0.01 and s["fps"] > 0 and s["seconds"] > 0

    # finished segments were not recomputed: not logged again, manifest rows untouched
    new = set(_segments_of(_log(log)[n_logged:]))
    assert not new & {(Path(v).name, a, b) for v, _, a, b, _, _ in done}
    after = {(v, i): (f, n) for v, i, _, _, f, n in _done_segments(db)}
    assert all(after[(v, i)] == (f, n) for v, i, _, _, f, n in done)
    assert len(after) == 5 + 3

    # the same archive uninterrupted (in process, same instance): identical files; both videos shared the pool
    clean = tmp_path / "clean"
    s2 = run_archive(str(src), str(clean), _opts(data["ckpt"]), workers=2, segment_frames=8, max_attempts=2,
                     quiet=True)
    assert s2["counts"] == {"done": 2, "failed": 2, "skipped": 0} and s2["max_videos_in_flight"] == 2
    for name, rel in [("a", "a.mp4"), ("b", "sub/b.mp4")]:
        assert (dst / rel).read_bytes() == (clean / rel).read_bytes(), rel
        frames, times, audio = _decode(dst / rel)
        assert np.array_equal(frames, data["ref"][name][0]) and times == data["ref"][name][1]
        assert audio == data["ref"][name][2]
    leftovers = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if not p.name.startswith(".upsr-manifest"))
    assert leftovers == ["a.mp4", "sub", "sub/b.mp4"]
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in src.rglob("*") if p.is_file()} == before

    # a third run has nothing to do: done videos skipped, exhausted failures reported again, Ray not started
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    s = json.loads(r.stdout)
    assert r.returncode == 1 and s["counts"] == {"done": 0, "failed": 2, "skipped": 2} and s["workers"] == 0


def test_cli_errors_are_one_line(data, tmp_path):
    """Usage and setup errors of `batch` and `upscale --workers`: one `error:` line, exit status 2, no traceback
    (the unreachable address in a fresh process, where Ray is not initialised yet)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "o.mp4"
    r = subprocess.run([sys.executable, "-m", "upsr_video", "upscale", str(data["dir"] / "b.mp4"), "-o", str(out),
                        *_cli_args(data["ckpt"]), "--workers", "2", "--ray-address", f"127.0.0.1:{port}"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: cannot join Ray"), r.stderr
    assert not out.exists() and not work_dir_for(out).exists()
    runner = CliRunner()
    (tmp_path / "in").mkdir()
    cases = [
        (["batch", str(tmp_path / "missing"), str(tmp_path / "x")], "input folder not found"),
        (["batch", str(tmp_path / "in"), str(tmp_path / "in")], "replace the originals"),
        (["batch", str(tmp_path / "in"), str(tmp_path / "x"), "--max-attempts", "0"], "max-attempts"),
        (["batch", str(tmp_path / "in"), str(tmp_path / "x"), "--workers", "0"], "--workers"),
        (["upscale", str(data["dir"] / "b.mp4"), "-o", str(tmp_path / "o.mp4"), "--workers", "2",
          "--segment-frames", "0"], "--segment-frames"),
        (["upscale", str(data["dir"] / "b.mp4"), "-o", str(tmp_path / "o.avi"), "--workers", "2"], "container"),
    ]
    for args, needle in cases:
        r = runner.invoke(upsr_video.cli.main, args)
        lines = r.stderr.strip().splitlines()
        assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], (args, r.output)
