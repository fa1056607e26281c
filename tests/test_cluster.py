"""``extract --engine ray``: the same folder as one process from a two-node local Ray cluster (one per session), with a
worker killed mid-run, resumed, refused, and without Ray installed."""

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import r21d_zoo
from r21d_zoo.cli import main
from r21d_zoo.data.features import FeatureStore
from r21d_zoo.data.inputs import VideoItem, discover_videos
from r21d_zoo.data.shards import shard_inputs
from r21d_zoo.infer.config import ExtractConfig
from r21d_zoo.infer.extraction import run_extraction
import util
from util import make_broken, make_video

pytestmark = [pytest.mark.video, pytest.mark.ray]

TINY = dict(util.TINY, num_classes=5)
CLIP = dict(num_frames=8, resize_size=(64, 85), crop_size=56)


def tiny_model():
    torch.manual_seed(0)
    model = r21d_zoo.create_model("r2plus1d_18", **TINY)
    model.pretrained_cfg.update(CLIP)
    return model.eval()


@pytest.fixture(scope="module")
def ray_cluster():
    """A head and one worker node on this machine, one CPU and a small object store each: one for the session's Ray
    tests (all here), shut down after them so its processes do not take the cores of the rest of the suite."""
    cluster_utils = pytest.importorskip("ray.cluster_utils", reason="the ray extra: pip install 'r21d-zoo[ray]'")
    env = dict(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", RAY_DEDUP_LOGS="0")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    store = dict(num_cpus=1, object_store_memory=80 << 20)
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args=dict(store, include_dashboard=False))
    cluster.add_node(**store)
    yield cluster
    cluster.shutdown()
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Four short videos of two sizes and rates, one broken file, and the model saved for ``--model local-dir``."""
    root = tmp_path_factory.mktemp("ray_videos")
    for i in range(4):
        make_video(root / f"v{i}.mp4", num_frames=10 + 6 * i, size=(64, 96) if i % 2 else (72, 80), fps=10 + 5 * i)
    make_broken("random", root / "broken.mp4")
    saved = tmp_path_factory.mktemp("ray_model") / "tiny"
    r21d_zoo.save_pretrained(tiny_model(), saved)
    return root, saved


def one_thread(run, *args, **kw):
    """``run`` at the model actors' one thread (so the single-process reference adds up in the same order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run(*args, **kw)
    finally:
        torch.set_num_threads(threads)


def one_process(videos, out, **kw):
    return one_thread(run_extraction, videos, out, tiny_model(), ExtractConfig(batch_size=2), progress=False, **kw)


def assert_same_folder(a: Path, b: Path):
    """Every video's features equal within 1e-6, file for file, with the same clip times and settings."""
    fa, fb = FeatureStore(a), FeatureStore(b)
    assert fa.names == fb.names and len(fa)
    for name in fa.names:
        x, y = fa.read(name), fb.read(name)
        assert x.features.shape == y.features.shape
        assert np.abs(x.features - y.features).max() <= 1e-6, name
        np.testing.assert_array_equal(x.clip_times, y.clip_times)
        np.testing.assert_array_equal(x.num_padded, y.num_padded)
    assert sorted(p.name for p in a.rglob("*") if p.is_file() and p.name != "manifest.jsonl") == sorted(
        p.name for p in b.rglob("*") if p.is_file() and p.name != "manifest.jsonl"
    )  # nothing partial or extra on either side
    assert json.loads((a / "extraction.json").read_text()) == json.loads((b / "extraction.json").read_text())


def manifest(out: Path) -> list:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_two_nodes_write_the_one_process_folder_resume_and_refuse_other_settings(ray_cluster, clips, tmp_path, capsys):
    root, saved = clips
    args = [str(root), "--model", f"local-dir:{saved}", "--batch-size", "2"]
    assert one_thread(main, ["extract", *args, "-o", str(tmp_path / "local"), "--workers", "0"]) == 1
    ray = ["--engine", "ray", "--address", ray_cluster.address]
    assert main(["extract", *args, "-o", str(tmp_path / "ray"), *ray]) == 1  # the broken file: recorded, exit 1
    out = capsys.readouterr().out
    assert "4 extracted" in out and "1 failed" in out and "busy workers per stage" in out
    run = json.loads((tmp_path / "ray" / "runs.jsonl").read_text())  # the run's metrics
    assert (run["engine"], run["done"], run["failed"]) == ("ray", 4, 1) and set(run["busy"]) == {"decode", "model"}
    assert json.loads((tmp_path / "local" / "runs.jsonl").read_text())["engine"] == "local"
    assert_same_folder(tmp_path / "local", tmp_path / "ray")
    rows = manifest(tmp_path / "ray")
    assert sorted(r["name"] for r in rows if r["status"] == "ok") == [f"v{i}" for i in range(4)]
    assert [r["name"] for r in rows if r["status"] == "error"] == ["broken"]
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("*.npy")}

    assert main(["extract", *args, "-o", str(tmp_path / "ray"), *ray]) == 1  # only the broken one is tried again
    assert "0 extracted" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("*.npy")} == written
    assert [r["status"] for r in manifest(tmp_path / "ray")[len(rows):]] == ["error"]

    assert main(["extract", *args, "-o", str(tmp_path / "ray"), *ray, "--dtype", "float16"]) == 3
    assert "other settings" in capsys.readouterr().err


def ray_processes(title: str) -> list:
    """Pids of this machine's Ray worker processes whose title starts with ``title``."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/cmdline").read_bytes().startswith(title.encode()):
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def test_killed_decode_and_model_workers_are_retried_and_nothing_is_lost_or_doubled(ray_cluster, clips, tmp_path):
    """SIGKILL a decode task as it runs and the model actor once the first video is written: Ray retries the task and
    restarts the actor."""
    root, _ = clips
    videos = discover_videos([root])[1:]  # the four good ones
    videos += [VideoItem(str(root / "v3.mp4"), f"seg{i}", start=0.2 * i, end=0.2 * i + 0.5) for i in range(3)]
    one_process(videos, tmp_path / "local")
    killed, stop = [], threading.Event()

    def kill_once_the_first_are_written():
        manifest_file = tmp_path / "ray" / "manifest.jsonl"
        todo = {"ray::MapBatches(_decode_rows)": 0, "ray::MapWorker(MapBatches(ModelStage))": 1}  # after n written
        while todo and not stop.is_set():
            done = len(manifest_file.read_text().splitlines()) if manifest_file.exists() else 0
            for title, after in list(todo.items()):
                pids = ray_processes(title) if done >= after else []
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                    killed.append((title.split("(")[-1].strip(")"), done))
                    todo.pop(title, None)
            time.sleep(0.005)

    killer = threading.Thread(target=kill_once_the_first_are_written)
    killer.start()
    try:
        summary = run_extraction(
            videos, tmp_path / "ray", tiny_model(), ExtractConfig(batch_size=2), progress=False, engine="ray",
            address=ray_cluster.address,
        )  # fmt: skip
    finally:
        stop.set()
        killer.join()
    assert {title for title, done in killed if done < len(videos)} == {"_decode_rows", "ModelStage"}, killed  # mid-run
    assert summary.done == len(videos) and summary.failed == 0
    assert_same_folder(tmp_path / "local", tmp_path / "ray")
    names = [r["name"] for r in manifest(tmp_path / "ray")]
    assert sorted(names) == sorted(v.name for v in videos)  # each video written once


def test_shards_into_hdf5_on_ray_equal_one_process(ray_cluster, clips, tmp_path):
    """WebDataset shards in, one HDF5 file out (the driver writes it): as in one process, and resumed by key."""
    root, saved = clips
    listed = tmp_path / "list.csv"
    listed.write_text("path,label\n" + "".join(f"{root}/v{i}.mp4,{'ab'[i % 2]}\n" for i in range(4)))
    assert main(["shards", "pack", str(listed), "-o", str(tmp_path / "shards"), "--max-per-shard", "3"]) == 0
    shards = shard_inputs([str(tmp_path / "shards")])
    one_process(shards, tmp_path / "local", format="hdf5")
    on_ray = dict(format="hdf5", engine="ray", address=ray_cluster.address, progress=False)
    first = run_extraction(shards, tmp_path / "ray", tiny_model(), ExtractConfig(batch_size=2), **on_ray)
    assert first.done == 4
    assert_same_folder(tmp_path / "local", tmp_path / "ray")
    assert (tmp_path / "ray" / "features.h5").exists()
    again = run_extraction(shards, tmp_path / "ray", tiny_model(), ExtractConfig(batch_size=2), **on_ray)
    assert (again.done, again.skipped) == (0, 4)


def test_without_ray_the_engine_is_refused_before_any_work(clips, tmp_path, monkeypatch, capsys):
    root, saved = clips
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as where the extra is not installed
    out = tmp_path / "out"
    assert main(["extract", str(root), "-o", str(out), "--model", f"local-dir:{saved}", "--engine", "ray"]) == 3
    assert "pip install 'r21d-zoo[ray]'" in capsys.readouterr().err
    assert not out.exists()


def test_what_the_ray_engine_cannot_do_is_refused(clips, tmp_path, capsys):
    root, saved = clips
    args = ["extract", str(root), "-o", str(tmp_path / "o"), "--model", f"local-dir:{saved}"]
    assert main([*args, "--address", "127.0.0.1:6379"]) == 2  # an address without the engine that uses it
    assert "--engine ray" in capsys.readouterr().err
    assert main([*args, "--engine", "ray", "--amp", "int8", "--runtime", "onnxruntime"]) == 3
    assert "--engine local" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
