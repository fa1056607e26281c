"""Feature extraction: the API against a hand-built reference, and the CLI's batch-job guarantees."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import r21d_zoo
from r21d_zoo.cli import main as cli_main
from r21d_zoo.data.inputs import VideoItem, discover_videos
from r21d_zoo.infer.config import InferenceOptions, ModelSource
from r21d_zoo.infer.extraction import run_extraction
from r21d_zoo.models import ClipSpec
from r21d_zoo.video import DecodeOptions, read_clip
import util
from util import make_audio_only, make_broken, make_video, make_zero_frames

pytestmark = pytest.mark.video

TINY = dict(util.TINY, num_classes=5)
DATA = dict(num_frames=8, resize_size=(64, 85), crop_size=56)


def tiny_model():
    model = r21d_zoo.create_model("r2plus1d_18", **TINY)
    model.pretrained_cfg.update(DATA)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny model saved like a released one, so the CLI loads it with ``--model local-dir:...``."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny"
    r21d_zoo.save_pretrained(tiny_model(), path)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """5 good videos of different lengths and sizes, and one file of each broken kind."""
    root = tmp_path_factory.mktemp("videos")
    good = [
        make_video(root / f"v{i}.mp4", num_frames=12 + 7 * i, size=(64, 96) if i % 2 else (72, 80), fps=10)
        for i in range(5)
    ]
    (root / "sub").mkdir()
    make_video(root / "sub" / "nested.mp4", num_frames=9, fps=10, audio=True)
    broken = root / "broken"
    broken.mkdir()
    make_broken("empty", broken / "empty.mp4")
    make_broken("random", broken / "random.avi")
    make_broken("truncated", broken / "truncated.mp4", good[0])
    make_audio_only(broken / "audio_only.mp4")
    make_zero_frames(broken / "zero.mkv")
    return root


def run_cli(*args) -> int:
    return cli_main(["extract", *map(str, args), "--workers", "0"])


def manifest(out: Path) -> list:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_extract_features_matches_decoding_and_transforming_by_hand(videos):
    model = tiny_model()
    path = videos / "v2.mp4"  # 26 frames at 10 fps: clips at 0, 0.8, 1.6, 2.4 s; the last one padded
    result = r21d_zoo.extract_features(model, path, batch_size=3)
    assert result.features.shape == (4, model.num_features) and result.features.dtype == np.float32
    np.testing.assert_allclose(result.clip_times, [[0, 0.8], [0.8, 1.6], [1.6, 2.4], [2.4, 3.2]])
    assert result.num_padded.tolist() == [0, 0, 0, 6]
    transform = r21d_zoo.create_transform(model)
    clips = torch.cat([transform(read_clip(str(path), s, 8).frames) for s in (0, 0.8, 1.6, 2.4)])
    with torch.inference_mode():
        expected = model.forward_head(model.forward_features(clips), pre_logits=True)
    np.testing.assert_allclose(result.features, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_layers_pooling_uniform_clips_and_three_crops(videos):
    model = tiny_model()
    path = videos / "v4.mp4"
    stage = r21d_zoo.extract_features(model, path, layer="layer2", spatial_pool="none", num_clips=3)
    assert stage.features.shape == (3, model.feature_info[2]["num_chs"], 14, 14)
    assert r21d_zoo.extract_features(model, path, layer=1, temporal_pool="none", num_clips=2).features.shape[:2] == (
        2,
        model.feature_info[1]["num_chs"],
    )
    logits = r21d_zoo.extract_features(model, path, layer="logits", num_clips=10)
    assert logits.features.shape == (10, 5)
    three = r21d_zoo.extract_features(model, path, crop_mode="three", num_clips=1)
    centre = r21d_zoo.extract_features(model, path, num_clips=1)
    assert three.features.shape == centre.features.shape and not np.allclose(three.features, centre.features)
    with pytest.raises(ValueError, match="unknown layer 'layer9'"):
        r21d_zoo.extract_features(model, path, layer="layer9")


def test_discover_videos_from_dirs_files_and_lists(videos, tmp_path):
    items = discover_videos([videos])
    names = [v.name for v in items]
    assert names == sorted(names) and "sub/nested" in names and "broken/zero" in names
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,label\n{videos / 'v1.mp4'},a\n{videos / 'v3.mp4'},b\n")
    assert [v.name for v in discover_videos([listing])] == ["v1", "v3"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(ValueError, match="would both be written as 'x'"):
        discover_videos([make_video(tmp_path / "a" / "x.mp4", 2), make_video(tmp_path / "b" / "x.mp4", 2)])


def test_cli_records_broken_videos_carries_on_and_exits_nonzero(videos, tiny_dir, tmp_path):
    out = tmp_path / "feats"
    rc = run_cli(videos, videos / "missing.mp4", "--model", f"local-dir:{tiny_dir}", "-o", out)
    assert rc == 1
    records = {r["name"]: r for r in manifest(out)}
    ok = sorted(n for n, r in records.items() if r["status"] == "ok")
    errors = sorted(n for n, r in records.items() if r["status"] == "error")
    assert ok == ["sub/nested", "v0", "v1", "v2", "v3", "v4"]
    assert errors == [
        "broken/audio_only",
        "broken/empty",
        "broken/random",
        "broken/truncated",
        "broken/zero",
        "missing",
    ]
    assert "no video stream" in records["broken/audio_only"]["error"]
    for name in ok:
        feats = np.load(out / f"{name}.npy")
        times = np.load(out / f"{name}.times.npy")
        assert feats.dtype == np.float32 and feats.shape == (records[name]["num_clips"], 64) == (len(times), 64)
    # v{i} has 12 + 7i frames at 10 fps; 8-frame clips back to back with the tail padded
    assert [len(np.load(out / f"v{i}.npy")) for i in range(5)] == [-(-(12 + 7 * i) // 8) for i in range(5)]
    assert not list(out.rglob("*.partial"))
    # a second run skips everything that is done and retries only the failures
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    assert run_cli(videos, "--model", f"local-dir:{tiny_dir}", "-o", out) == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")} == before
    assert len(manifest(out)) == len(records) + 5


def test_cli_safetensors_fp16_and_workers_match_the_in_process_run(videos, tiny_dir, tmp_path):
    good = [videos / f"v{i}.mp4" for i in range(3)]
    args = ("--model", f"local-dir:{tiny_dir}", "--format", "safetensors", "--dtype", "float16")
    args += ("--runtime", "eager")  # auto chooses beside decoding workers and alone separately: equal within 1e-4 only
    assert cli_main(["extract", *map(str, good), *args, "-o", str(tmp_path / "w2"), "--workers", "2"]) == 0
    assert run_cli(*good, *args, "-o", tmp_path / "w0") == 0
    from safetensors.numpy import load_file

    for i in range(3):
        a, b = load_file(tmp_path / "w2" / f"v{i}.safetensors"), load_file(tmp_path / "w0" / f"v{i}.safetensors")
        assert a["features"].dtype == np.float16 and a["clip_times"].shape == (len(a["features"]), 2)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


# Runs the CLI in a child process whose os.replace kills the process (SIGKILL: no cleanup, no finally blocks) at the
# moment the K-th features file is about to be renamed into place, i.e. with its temp file fully written.
KILL_AT_RENAME = textwrap.dedent(
    """
    import os, signal, sys
    real, kill_at, count = os.replace, int(sys.argv[1]), [0]

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith(".npy") and not str(dst).endswith(".times.npy"):
            count[0] += 1
            if count[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst, *args, **kwargs)

    os.replace = replace
    from r21d_zoo.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.mark.video
def test_killed_run_resumes_without_recomputing_or_partial_files(tmp_path, tiny_dir):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(6):
        make_video(root / f"clip{i:02d}.mp4", num_frames=40, size=(64, 96), fps=10)
    out = tmp_path / "out"
    args = ["extract", str(root), "--model", f"local-dir:{tiny_dir}", "-o", str(out), "--workers", "0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    killed = subprocess.run([sys.executable, "-c", KILL_AT_RENAME, "3", *args], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert [r["name"] for r in manifest(out)] == ["clip00", "clip01"]  # the third was killed before its rename
    partial = [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".r21d-zoo.lock"]
    assert partial == [".clip02.npy.partial"]  # the kill left a fully written temp file behind
    assert (out / ".r21d-zoo.lock").exists()  # and the lock of the dead run, which the next one takes over
    assert {p.name for p in out.glob("*.npy") if not p.name.endswith(".times.npy")} == {"clip00.npy", "clip01.npy"}
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("clip0[01]*.npy")}
    rerun = subprocess.run([sys.executable, "-m", "r21d_zoo", *args], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "4 extracted" in rerun.stdout and "2 already done" in rerun.stdout
    assert sorted(p.name for p in out.glob("clip*.npy") if ".times" not in p.name) == [
        f"clip{i:02d}.npy" for i in range(6)
    ]
    assert {n: out.joinpath(n).stat().st_mtime_ns for n in before} == before  # finished videos were not redone
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no partial or temp files left
    assert all(np.load(out / f"clip{i:02d}.npy").shape == (5, 64) for i in range(6))


def _sharded_worker(rank: int, world: int, init: str, args: list) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        rc = cli_main(args)
        assert rc == 0, rc
        torch.distributed.barrier()  # both ranks done before gloo tears down (its threads race at exit)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.ddp
def test_two_process_gloo_run_equals_single_process_bit_for_bit(videos, tiny_dir, tmp_path):
    good = [str(videos / f"v{i}.mp4") for i in range(5)]
    common = ["--model", f"local-dir:{tiny_dir}", "--workers", "0", "--runtime", "eager"]  # one runtime on each side
    torch.multiprocessing.spawn(
        _sharded_worker,
        args=(2, f"file://{tmp_path}/init", ["extract", *good, *common, "-o", str(tmp_path / "ddp")]),
        nprocs=2,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli_main(["extract", *good, *common, "-o", str(tmp_path / "single")]) == 0
    finally:
        torch.set_num_threads(threads)
    records = manifest(tmp_path / "ddp")
    assert sorted(r["name"] for r in records) == [f"v{i}" for i in range(5)]  # no duplicates, none dropped
    assert {r["name"]: r["rank"] for r in records} == {"v0": 0, "v1": 1, "v2": 0, "v3": 1, "v4": 0}
    for i in range(5):
        for suffix in (".npy", ".times.npy"):
            a = np.load(tmp_path / "ddp" / f"v{i}{suffix}")
            b = np.load(tmp_path / "single" / f"v{i}{suffix}")
            assert a.tobytes() == b.tobytes()


def _write_shared(rank: int, path: str) -> None:
    from r21d_zoo._io import atomic_write

    text = json.dumps({"settings": list(range(2000))}).encode()
    for _ in range(300):
        atomic_write(Path(path), lambda f: f.write(text), shared=True)
        assert json.loads(Path(path).read_bytes()) == json.loads(text)  # never a partial file


def test_ranks_recording_the_same_settings_file_at_once_do_not_collide(tmp_path):
    """Every rank (or --shard-id job) records extraction.json: each writes through its own temp file."""
    torch.multiprocessing.spawn(_write_shared, args=(str(tmp_path / "extraction.json"),), nprocs=2)
    assert [p.name for p in tmp_path.iterdir()] == ["extraction.json"]


def test_shard_flags_split_without_duplicates(videos, tiny_dir, tmp_path):
    good = [videos / f"v{i}.mp4" for i in range(5)]
    for shard in range(2):
        assert (
            run_cli(*good, "--model", f"local-dir:{tiny_dir}", "-o", tmp_path, "--shard-id", shard, "--num-shards", 2)
            == 0
        )
    assert sorted(r["name"] for r in manifest(tmp_path)) == [f"v{i}" for i in range(5)]


def test_clip_settings_come_from_the_weights_and_overrides_replace_single_fields():
    tv = ClipSpec.from_model(r21d_zoo.create_model("r2plus1d_18.tv_kinetics400_16f", num_classes=5))
    assert (tv.num_frames, tv.frame_rate, tv.resize_size, tv.crop_size, tv.antialias) == (
        16,
        15.0,
        (128, 171),
        112,
        False,
    )
    csn = ClipSpec.from_model(r21d_zoo.get_pretrained_cfg("ir_csn_152.ig65m_ft_kinetics400_32f"), num_frames=8)
    assert (csn.num_frames, csn.sampling_stride, csn.crop_size, csn.resize_size) == (8, 2, 224, 256)
    assert ClipSpec.from_model(csn, num_frames=None, crop_size=None) == csn  # None keeps the weights' value
    with pytest.raises(TypeError, match="unknown clip setting"):
        ClipSpec.from_model(csn, frames=8)
    with pytest.raises(ValueError, match="crop_mode must be one of"):
        ClipSpec.from_model(csn, crop_mode="middle")


@pytest.mark.video
def test_extraction_records_its_settings_and_never_mixes_them(videos, tiny_dir, tmp_path, capsys):
    good = [videos / f"v{i}.mp4" for i in range(2)]
    out = tmp_path / "feats"
    common = [*good, "--model", f"local-dir:{tiny_dir}", "-o", out]
    assert run_cli(*common) == 0
    settings = json.loads((out / "extraction.json").read_text())
    assert settings["layer"] == "pre_logits" and settings["clip"]["num_frames"] == 8 and settings["format"] == "npy"
    assert len(settings["weights"]["sha256"]) == 64 and settings["r21d_zoo_version"] == r21d_zoo.__version__
    first = {r["settings"] for r in manifest(out)}
    assert len(first) == 1
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert run_cli(*common, "--layer", "layer3", "--spatial-pool", "none") == 3  # refused before any work
    err = capsys.readouterr().err
    assert "layer: 'pre_logits' -> 'layer3'" in err and "spatial_pool: 'avg' -> 'none'" in err
    assert "another folder (-o)" in err and "--overwrite" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing touched
    assert run_cli(*common) == 0 and "2 already done" in capsys.readouterr().out  # same settings: resumes
    assert run_cli(*common, "--layer", "layer3", "--spatial-pool", "none", "--overwrite") == 0
    assert np.load(out / "v0.npy").ndim == 4  # clips x channels x h x w: the new features, not the old
    assert json.loads((out / "extraction.json").read_text())["layer"] == "layer3"
    assert len({r["settings"] for r in manifest(out)} - first) == 1  # the new lines name the new settings


def test_random_weights_are_a_seeded_provenance_of_their_own_and_resume(videos, tmp_path, capsys):
    """No tag, licence or results of the default weights; the seed is recorded, so the run resumes, and another seed
    is another model (refused in the same folder)."""
    out = tmp_path / "random"
    tiny = ["--model", "r2plus1d_18.kinetics400_16f", "--random-weights", "--model-args", json.dumps(util.TINY)]
    common = [videos / "v0.mp4", videos / "v1.mp4", *tiny, "--num-frames", "8", "--crop-size", "56", "-o", out]
    assert run_cli(*common, "--seed", "3") == 0
    weights = json.loads((out / "extraction.json").read_text())["weights"]
    assert weights["tag"] is None and weights["base_model"] is None and weights["init_seed"] == 3
    first = np.load(out / "v0.npy")
    (out / "v0.npy").unlink()  # as if the run had been interrupted before this video
    capsys.readouterr()
    assert run_cli(*common, "--seed", "3") == 0 and "1 already done" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(out / "v0.npy"), first)  # the same random model again
    assert run_cli(*common, "--seed", "4") == 3
    assert "weights.init_seed: 3 -> 4" in capsys.readouterr().err
    source = ModelSource("r2plus1d_18.kinetics400_16f", pretrained=False, model_args=util.TINY)
    cfg = source.create(seed=3).pretrained_cfg
    assert not {"tag", "url", "license", "license_name", "origin_url"} & set(cfg)
    assert cfg["metrics"] == [] and cfg["label_names"] is None and cfg["base_model"] is None


@pytest.mark.video
def test_batch_jobs_log_progress_with_rate_and_eta_when_stderr_is_not_a_terminal(videos, tiny_dir, tmp_path, capsys):
    import logging

    logging.getLogger("r21d_zoo.progress").setLevel(logging.INFO)
    os.environ["R21D_ZOO_LOG_EVERY"] = "0"  # a line per video
    try:
        good = [videos / f"v{i}.mp4" for i in range(3)]
        assert run_cli(*good, "--model", f"local-dir:{tiny_dir}", "-o", tmp_path / "f") == 0
    finally:
        del os.environ["R21D_ZOO_LOG_EVERY"]
    lines = [x for x in capsys.readouterr().err.splitlines() if "r21d_zoo.progress: extract:" in x]
    assert [x.split("extract: ")[1].split(" ")[0] for x in lines] == ["1/3", "2/3", "3/3"]
    assert "video/s" in lines[0] and "ETA" in lines[0] and lines[0][:4].isdigit()  # timestamped


def test_feature_fps_centred_windows_and_segments_give_the_times_derived_by_hand(videos):
    """v2.mp4: 26 frames at 10 fps (2.6 s), clips of 8 frames (0.8 s)."""
    model, path = tiny_model(), videos / "v2.mp4"
    rate = r21d_zoo.extract_features(model, path, feature_fps=2.5)  # one feature every 0.4 s: ceil(2.6 / 0.4) = 7
    np.testing.assert_allclose(rate.clip_times[:, 0], [0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4])
    assert rate.num_padded.tolist() == [0, 0, 0, 0, 0, 2, 6]
    centred = r21d_zoo.extract_features(model, path, feature_fps=2.5, centered=True)  # windows centred on i * 0.4 s
    np.testing.assert_allclose(centred.clip_times.mean(1), [0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4])
    assert centred.num_padded.tolist() == [4, 0, 0, 0, 0, 0, 2]  # the first frame before 0 s, the last after the end
    np.testing.assert_allclose(centred.features[2], rate.features[1], rtol=1e-5, atol=1e-6)  # both read 0.4-1.2 s
    transform = r21d_zoo.create_transform(model)
    head = read_clip(str(path), 0.0, 4).frames  # the window at 0 s: frame 0 four times, then frames 0-3
    with torch.inference_mode():
        first = model.forward_head(model.forward_features(transform(torch.cat([head[:1].repeat(4, 1, 1, 1), head]))),
                                   pre_logits=True)  # fmt: skip
    np.testing.assert_allclose(centred.features[0], first[0].numpy(), rtol=1e-4, atol=1e-5)
    assert len(r21d_zoo.extract_features(model, path, centered=True).features) == 4  # every 0.8 s, centred

    clips = r21d_zoo.extract_features(model, path)  # back to back: centres 0.4, 1.2, 2.0, 2.8 s
    f = clips.features
    three = r21d_zoo.extract_features(model, path, segments=3)  # parts of 0.867 s: centres in parts 0, 1, 2, 2
    np.testing.assert_allclose(three.clip_times, [[0, 2.6 / 3], [2.6 / 3, 5.2 / 3], [5.2 / 3, 2.6]])
    np.testing.assert_allclose(three.features, [f[0], f[1], (f[2] + f[3]) / 2], rtol=1e-5, atol=1e-6)
    assert three.num_padded.tolist() == [0, 0, 6]
    five = r21d_zoo.extract_features(model, path, segments=5)  # parts of 0.52 s; part 1 (0.52-1.04) has no centre
    np.testing.assert_allclose(five.features, [f[0], f[0], f[1], f[2], f[3]], rtol=1e-5, atol=1e-6)
    assert cli_main(["extract", str(path), "-o", "unused", "--feature-fps", "2", "--stride-sec", "1"]) == 2
    assert cli_main(["extract", str(path), "-o", "unused", "--num-clips", "3", "--segments", "4"]) == 2


# As KILL_AT_RENAME, for the single HDF5 file: SIGKILL when the K-th video's staged dataset is about to be moved to
# its name (written and flushed under .partial/, not yet under the video's name).
KILL_AT_MOVE = textwrap.dedent(
    """
    import os, signal, sys
    import h5py
    real, kill_at, count = h5py.Group.move, int(sys.argv[1]), [0]

    def move(self, source, dest):
        count[0] += 1
        if count[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, source, dest)

    h5py.Group.move = move
    from r21d_zoo.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.fixture
def one_thread():
    """The CPU's result bit for bit as a child process with OMP_NUM_THREADS=1 computes it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_hdf5_holds_what_npy_holds_and_a_killed_run_resumes(tmp_path, tiny_dir, one_thread):
    import h5py  # the dev extra has it

    from r21d_zoo.data import FeatureStore

    root = tmp_path / "many"
    (root / "sub").mkdir(parents=True)
    for i in range(3):
        make_video(root / ("sub" if i == 2 else "") / f"clip{i:02d}.mp4", num_frames=12 + 8 * i, size=(64, 96), fps=10)
    args = ["extract", str(root), "--model", f"local-dir:{tiny_dir}", "--workers", "0", "--feature-fps", "2"]
    assert cli_main([*args, "-o", str(tmp_path / "npy")]) == 0
    out = tmp_path / "h5"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    killed = subprocess.run([sys.executable, "-c", KILL_AT_MOVE, "2", *args, "-o", str(out), "--format", "hdf5"],
                            env=env, capture_output=True)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert FeatureStore(out).names == ["clip00"]  # the second is staged, not under its name
    with h5py.File(out / "features.h5") as f:
        assert list(f[".partial"]) == ["clip01"]
    assert cli_main([*args, "-o", str(out), "--format", "hdf5"]) == 0
    assert [r["name"] for r in manifest(out)] == ["clip00", "clip01", "sub/clip02"]
    npy, h5 = FeatureStore(tmp_path / "npy"), FeatureStore(out)
    assert h5.names == npy.names == ["clip00", "clip01", "sub/clip02"]
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "extraction.json", "features.h5", "manifest.jsonl",
                                                     "runs.jsonl"]  # fmt: skip
    for name in npy.names:
        a, b = h5.read(name), npy.read(name)
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.clip_times, b.clip_times)
        assert len(a.features) == int(np.ceil(a.info["duration"] * 2))  # --feature-fps 2: 1.2, 2.0, 2.8 s
    with h5py.File(out / "features.h5") as f:
        assert ".partial" not in f
        settings = json.loads(f["sub/clip02"].attrs["extraction"])
        assert settings["format"] == "hdf5" and settings["clips"]["feature_fps"] == 2
    assert settings == json.loads((out / "extraction.json").read_text())
    assert cli_main([*args, "-o", str(out), "--format", "hdf5"]) == 0  # all done: nothing recomputed
    assert len(manifest(out)) == 3


def test_a_resumed_extract_makes_again_what_changed_since(tiny_dir, tmp_path):
    """Finished work is trusted by the video's content identity (size and time), not by its name alone."""
    root = tmp_path / "v"
    root.mkdir()
    make_video(root / "a.mp4", num_frames=12, fps=10)
    make_video(root / "b.mp4", num_frames=12, fps=10)
    out = tmp_path / "f"
    assert run_cli(root, "--model", f"local-dir:{tiny_dir}", "-o", out) == 0
    assert len(np.load(out / "a.npy")) == 2
    make_video(root / "a.mp4", num_frames=30, fps=10)  # replaced by a longer video
    assert run_cli(root, "--model", f"local-dir:{tiny_dir}", "-o", out) == 0
    assert len(np.load(out / "a.npy")) == 4 and [r["name"] for r in manifest(out)] == ["a", "b", "a"]
    assert run_cli(root, "--model", f"local-dir:{tiny_dir}", "-o", out) == 0  # nothing changed: nothing redone
    assert len(manifest(out)) == 3


def test_progress_shows_how_far_into_a_long_video_it_is(tiny_dir, tmp_path, monkeypatch, caplog):
    """One long video at a high feature rate once gave no sign of life until it was done."""
    monkeypatch.setenv("R21D_ZOO_LOG_EVERY", "0")
    video = make_video(tmp_path / "long.mp4", num_frames=40, fps=10)
    with caplog.at_level("INFO", logger="r21d_zoo.progress"):
        args = ["--model", f"local-dir:{tiny_dir}", "-o", tmp_path / "f", "--feature-fps", "4", "--batch-size", "4"]
        assert run_cli(video, *args) == 0
    lines = [r.getMessage() for r in caplog.records if "clips=" in r.getMessage()]
    assert "extract: 0/1 videos" in lines[0] and "video=long, clips=4/16" in lines[0], lines
    assert any("clips=12/16" in line for line in lines)


def test_decoding_and_inference_options_travel_as_one_value_and_the_old_keywords_still_work(tiny_dir, videos, tmp_path):
    """``DecodeOptions`` and ``InferenceOptions`` carry what was threaded by hand; the 0.x keywords work for one
    release, with a warning naming the carrier."""
    model = r21d_zoo.create_model(f"local-dir:{tiny_dir}")
    cfg = r21d_zoo.ExtractConfig(num_clips=2)
    items = [VideoItem(str(videos / "v0.mp4"), "v0")]
    new = run_extraction(items, tmp_path / "new", model, cfg, decode=DecodeOptions("pyav"),
                         inference=InferenceOptions("cpu", "none"), progress=False)  # fmt: skip
    with pytest.warns(FutureWarning, match=r"run_extraction\(device=\.\.\., amp=\.\.\.\) is deprecated"):
        old = run_extraction(items, tmp_path / "old", model, cfg, device="cpu", amp="none", progress=False)
    with pytest.warns(FutureWarning, match=r"run_extraction\(decoder=\.\.\.\) is deprecated"):
        run_extraction(items, tmp_path / "older", model, cfg, decoder="pyav", progress=False)
    assert new.done == old.done == 1
    np.testing.assert_array_equal(np.load(tmp_path / "new" / "v0.npy"), np.load(tmp_path / "old" / "v0.npy"))
    with pytest.raises(TypeError, match="unexpected keyword argument 'devise'"):
        run_extraction(items, tmp_path / "x", model, cfg, devise="cpu")


def test_a_slurm_array_task_takes_its_own_part_without_flags(tiny_dir, videos, tmp_path, monkeypatch):
    """``sbatch --array=10-14:2`` runs 3 tasks; each, with no --shard-id/--num-shards, extracts videos[i::3]."""
    out = tmp_path / "f"
    good = [videos / f"v{i}.mp4" for i in range(5)]
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "10")
    monkeypatch.setenv("SLURM_ARRAY_TASK_STEP", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    for task in (10, 12, 14):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        assert run_cli(*good, "--model", f"local-dir:{tiny_dir}", "-o", out) == 0
    rows = manifest(out)
    assert sorted(r["name"] for r in rows) == [f"v{i}" for i in range(5)]  # every video once
    assert {r["name"]: (r["rank"], r["num_shards"]) for r in rows}["v4"] == (1, 3)  # v4 = videos[1::3][1]
