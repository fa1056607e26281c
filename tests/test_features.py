"""The feature store: every format ``extract`` writes reads back the same through every reader (the store, ``probe``,
``dedup``), so a folder's results do not depend on its file format."""

import json

import numpy as np
import pytest

from r21d_zoo._errors import EXIT_INPUT, InputError
from r21d_zoo.cli import main
from r21d_zoo.data.features import FEATURE_FORMATS, FeatureStore, VideoFeatures, write_features
from r21d_zoo.data.labelled import read_labelled
from r21d_zoo.data.synthetic import make_motion_dataset
from r21d_zoo.jobs.probe import run_probe
from util import TINY


@pytest.mark.parametrize("fmt", sorted(FEATURE_FORMATS))
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_every_format_round_trips_through_the_store(tmp_path, fmt, dtype):
    rng = np.random.default_rng(0)
    written = {
        "a": VideoFeatures(rng.normal(size=(3, 8)).astype(np.float32), np.array([[0, 1], [1, 2], [2, 3.5]])),
        "sub/b": VideoFeatures(
            rng.normal(size=(2, 4, 2, 3, 3)).astype(np.float32), np.array([[0, 0.5], [0.5, 1.0]]), np.array([0, 2])
        ),
    }
    for name, result in written.items():
        paths = write_features(tmp_path, name, result, fmt, dtype)
        assert all(p.exists() for p in paths) and paths[-1].name.endswith(FEATURE_FORMATS[fmt].suffix)
    store = FeatureStore(tmp_path)
    assert store.names == ["a", "sub/b"] and store.by_stem() == {"a": "a", "b": "sub/b"}
    for name, result in written.items():
        back = store.read(name)
        assert back.features.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(back.features, result.features.astype(dtype))
        np.testing.assert_array_equal(back.clip_times, result.clip_times)


def test_one_video_in_two_formats_or_two_videos_with_one_name_are_refused(tmp_path):
    result = VideoFeatures(np.zeros((1, 4), np.float32), np.zeros((1, 2)))
    write_features(tmp_path / "both", "v", result, "npy")
    write_features(tmp_path / "both", "v", result, "safetensors")
    with pytest.raises(InputError, match="both hold the features"):
        FeatureStore(tmp_path / "both")
    write_features(tmp_path / "stems", "x/v", result, "npy")
    write_features(tmp_path / "stems", "y/v", result, "npy")
    with pytest.raises(InputError, match="share the name 'v'"):
        FeatureStore(tmp_path / "stems").by_stem()
    with pytest.raises(InputError, match="no such feature folder"):
        FeatureStore(tmp_path / "missing")


@pytest.mark.video
def test_safetensors_and_npy_folders_give_the_same_probe_and_dedup_results(tmp_path, capsys):
    """The seam: ``extract --format F`` then ``probe`` and ``dedup`` on that folder, for every format, and mixed."""
    root = tmp_path / "data"
    make_motion_dataset(root, videos_per_class=4, val_per_class=2, num_frames=8, size=32)
    (root / "left" / "v_copy.mp4").write_bytes(next((root / "left").glob("*.mp4")).read_bytes())  # a duplicate
    train, val = read_labelled(root / "train.csv"), read_labelled(root / "val.csv", classes=["left", "right"])
    model = ["--model", "r2plus1d_18", "--random-weights", "--model-args", json.dumps(dict(TINY, num_classes=2))]
    clip = ["--num-frames", "8", "--resize", "32", "32", "--crop-size", "28", "--num-clips", "2", "--workers", "0"]
    probes, pairs = {}, {}
    for fmt in sorted(FEATURE_FORMATS):
        assert main(["extract", str(root), "-o", str(tmp_path / fmt), "--format", fmt] + model + clip) == 0
        assert len(FeatureStore(tmp_path / fmt)) == 13
        summary = run_probe(tmp_path / fmt, train, tmp_path / fmt, val)
        probes[fmt] = {k: summary[k] for k in ("test_accuracy", "l2", "val_scores", "train_size", "test_size")}
        out = tmp_path / f"dedup-{fmt}.txt"
        args = ["dedup", "--pretrain", str(tmp_path / fmt / "left"), "--target", str(tmp_path / fmt), "-o", str(out)]
        assert main(args + ["--threshold", "0.999"]) == 0
        pairs[fmt] = json.loads(out.with_name(out.name + ".json").read_text())["pairs"]
    assert probes["npy"]["train_size"] == 8 and probes["npy"]["test_size"] == 4
    assert probes["safetensors"] == probes["npy"]
    assert pairs["safetensors"] == pairs["npy"] and {p["pretrain"] for p in pairs["npy"]} >= {"v_copy"}
    mixed = tmp_path / "dedup-mixed.txt"
    args = ["dedup", "--pretrain", str(tmp_path / "npy" / "left"), "--target", str(tmp_path / "safetensors")]
    assert main(args + ["-o", str(mixed), "--threshold", "0.999"]) == 0
    assert json.loads(mixed.with_name(mixed.name + ".json").read_text())["pairs"] == pairs["npy"]
    # --random-weights draws from --seed (0: the same weights for every format above); another seed, other weights
    assert main(["extract", str(root / "left"), "-o", str(tmp_path / "other"), "--seed", "1"] + model + clip) == 0
    args = ["dedup", "--pretrain", str(tmp_path / "other"), "--target", str(tmp_path / "npy"), "-o", str(mixed)]
    assert main(args) == EXIT_INPUT
    assert "different extractions (weights.sha256: " in capsys.readouterr().err
