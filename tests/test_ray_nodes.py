"""Ray with several nodes on this machine (`ray.cluster_utils.Cluster`: a head and worker raylets, each its own
object store and worker processes): a worker node dies in the middle of an archive job, the job completes and
its outputs are byte for byte those of a run without the failure.

The head has no CPU, so the two actors (one CPU each) sit on the two worker nodes. Once both actors have loaded
the model and a segment is recorded finished, the node of one actor (found through its raylet) is removed without
grace (its raylet and workers killed, as when a machine fails) and nothing replaces it: the segment the lost actor
was computing is run again on the surviving node and the job completes there. Parts are lossless (crf 0) and
the tiny diffusion model runs one step, so every frame depends on its shot's noise and temporal context.
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

import videogen
from tinymodel import tiny_checkpoint
from pipelines.actors import SEGMENT_LOG_ENV

REPO = Path(__file__).resolve().parents[1]
NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}


def _clip(path, n, index, audio=False):
    return videogen.write_video(path, videogen.pan_frames(n, 64, 48, index=index, step=5), audio="aac" if audio else None,
                                time_base=Fraction(1, 12800), pts=[512 * i for i in range(n)])


def _decode(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(s)]), [p.pts for p in c.demux(s) if p.size]


def _done(db):
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT video, idx FROM segments WHERE state='done'").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                      "object_store_memory": 80 * 1024 * 1024})
    nodes = [c.add_node(**NODE) for _ in range(2)]
    c.wait_for_nodes()
    address = c.address
    yield c, nodes
    c.shutdown()
    if address and os.environ.get("RAY_ADDRESS") == address:  # set by the Cluster: later tests start their own
        os.environ.pop("RAY_ADDRESS")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("nodes")
    src = d / "in"
    (src / "sub").mkdir(parents=True)
    _clip(src / "a.mp4", 24, 41, audio=True)
    _clip(src / "sub" / "b.mp4", 16, 43)
    return {"src": src, "ckpt": tiny_checkpoint(d / "tiny.safetensors"), "dir": d}


def _batch(data, dst, address, log):
    return [sys.executable, "-m", "upsr_video", "batch", str(data["src"]), str(dst), "--scale", "2", "--checkpoint",
            str(data["ckpt"]), "--crf", "0", "--preset", "ultrafast", "--device", "cpu", "--steps", "1",
            "--threads", "1", "--workers", "2", "--segment-frames", "4",
            "--ray-address", address, "--quiet"], {**os.environ, SEGMENT_LOG_ENV: str(log)}


@pytest.mark.slow
def test_worker_node_lost_mid_archive_job_completes_identically(cluster, data):
    c, nodes = cluster
    d = data["dir"]
    # the reference: the same archive on the same cluster, nothing failing
    cmd, env = _batch(data, d / "clean", c.address, d / "clean.log")
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["counts"] == {"done": 2, "failed": 0, "skipped": 0}

    log = d / "faulty.log"
    dst = d / "faulty"
    cmd, env = _batch(data, dst, c.address, log)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.time()
    while time.time() - t0 < 300 and proc.poll() is None:  # both actors up and a segment finished
        if len(_loads(log)) == 2 and _done(dst / ".upsr-manifest.sqlite"):
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the job ended before the node was removed: {proc.stderr.read().decode()[-1500:]}"
    done_before = len(_done(dst / ".upsr-manifest.sqlite"))
    victim = _loads(log)[0]
    node = _node_of(c, victim)
    c.remove_node(node, allow_graceful=False)  # a machine fails: its raylet and the actor on it are killed
    nodes.remove(node)  # and no replacement joins: the job goes on with the surviving node
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        raise
    assert proc.returncode == 0, err.decode()[-2000:]
    s = json.loads(out)
    assert s["counts"] == {"done": 2, "failed": 0, "skipped": 0} and s["frames"] == 24 + 16
    assert done_before < 6 + 4, "the job had finished before the node was removed"
    for rel in ("a.mp4", "sub/b.mp4"):
        assert (dst / rel).read_bytes() == (d / "clean" / rel).read_bytes(), rel
    frames, pts = _decode(dst / "a.mp4")
    assert len(frames) == 24 and pts == _decode(data["src"] / "a.mp4")[1]
    rows = [ln.split("\t") for ln in log.read_text().splitlines()]
    assert not _alive(victim)  # the actor on the lost node is gone ...
    segs = [(Path(r[1]).name, int(r[2]), int(r[3])) for r in rows if r[0] == "segment"]
    assert len(set(segs)) == 6 + 4  # ... yet every segment finished: the one it was computing ran again
    assert len([r for r in rows if r[0] == "segment" and int(r[4]) == victim]) < 10


def _loads(log):
    """Pids of the actors that loaded the model, in order."""
    if not log.exists():
        return []
    return [int(r.split("\t")[4]) for r in log.read_text().splitlines() if r.startswith("load\t")]


def _ppid(pid):
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _node_of(c, pid):
    """The cluster node whose raylet started worker process `pid`."""
    raylets = {n.all_processes["raylet"][0].process.pid: n for n in c.list_all_nodes() if "raylet" in n.all_processes}
    p = pid
    while p > 1:
        if p in raylets:
            return raylets[p]
        p = _ppid(p)
    raise AssertionError(f"no raylet is an ancestor of worker {pid}")


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
