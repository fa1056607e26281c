"""The onnxruntime runtime: the same outputs as the model for every call extraction makes, cached graphs that are
never stale, int8 calibrated and checked against float32, and the runtime rules."""

import json

import numpy as np
import pytest
import torch

import r21d_zoo
import util
from r21d_zoo.cli import main
from r21d_zoo.deploy import onnx_runtime, optimize
from r21d_zoo.deploy.optimize import optimize_for_inference, resolve_runtime
from r21d_zoo.infer import features as extract
from util import make_video, randomise_bn

DATA = dict(num_frames=8, resize_size=(40, 53), crop_size=32)


def tiny(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = randomise_bn(r21d_zoo.create_model("r2plus1d_18", **util.TINY, num_classes=5)).eval()
    model.pretrained_cfg.update(DATA)
    return model


def test_every_call_matches_the_model_at_any_batch_and_graphs_are_cached_by_content(tmp_path, monkeypatch, caplog):
    model = tiny()
    ort = optimize_for_inference(model, runtime="onnxruntime", cache_dir=tmp_path)
    x = torch.randn(3, 3, 8, 32, 32)
    with torch.inference_mode():
        for batch in (x[:1], x):
            torch.testing.assert_close(ort(batch), model(batch), rtol=1e-4, atol=1e-4)
            got = ort.forward_intermediates(batch, [1, 3], stop_early=True, intermediates_only=True)
            want = model.forward_intermediates(batch, [1, 3], stop_early=True, intermediates_only=True)
            assert [g.shape for g in got] == [w.shape for w in want]
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)
    files = sorted(p.name for p in tmp_path.glob("*.onnx"))
    assert len(files) == 2 and files[0].startswith("r2plus1d_18-forward-") and "stages1_3-early-only" in files[1]

    def no_export(*args, **kwargs):
        raise AssertionError("a cached graph was exported again")

    monkeypatch.setattr(onnx_runtime, "export_graph", no_export)
    again = optimize_for_inference(model, runtime="onnxruntime", cache_dir=tmp_path)
    with torch.inference_mode():
        assert torch.equal(again(x), ort(x))  # another copy of the same weights reads the cached graph
    monkeypatch.undo()

    other = tiny(seed=1)  # other weights: another graph, never the stale one
    forward = tmp_path / files[0]
    forward.write_bytes(b"not a graph")  # and a damaged cache file is exported again, with a warning
    with torch.inference_mode():
        torch.testing.assert_close(
            optimize_for_inference(other, runtime="onnxruntime", cache_dir=tmp_path)(x), other(x), rtol=1e-4, atol=1e-4
        )
        assert not torch.allclose(other(x), model(x))
        torch.testing.assert_close(
            optimize_for_inference(model, runtime="onnxruntime", cache_dir=tmp_path)(x), model(x), rtol=1e-4, atol=1e-4
        )
    assert len(list(tmp_path.glob("*forward*.onnx"))) == 2
    assert "unreadable cached graph" in caplog.text


def test_runtime_rules_and_impossible_choices(monkeypatch):
    assert resolve_runtime("auto", "cpu", "int8") == "onnxruntime"
    assert resolve_runtime("auto", "cpu", "none") == "torch"  # as fast as onnxruntime here (bench/bench_runtimes.py)
    assert resolve_runtime("auto", "cpu", "bf16") == "torch"
    assert resolve_runtime("auto", "cuda", "auto") == "torch"
    with pytest.raises(ValueError, match="runs on the CPU, not on cuda"):
        resolve_runtime("auto", "cuda", "int8")
    assert resolve_runtime("eager", "cpu", "none") == "eager"
    with pytest.raises(ValueError, match="runs on the CPU, not on cuda"):
        resolve_runtime("onnxruntime", "cuda", "none")
    with pytest.raises(ValueError, match="float32 or int8, not bf16"):
        resolve_runtime("onnxruntime", "cpu", "bf16")
    with pytest.raises(ValueError, match="int8 runs on the onnxruntime runtime"):
        resolve_runtime("torch", "cpu", "int8")
    with pytest.raises(ValueError, match="runtime must be one of"):
        resolve_runtime("tensorrt", "cpu", "none")
    with pytest.raises(ValueError, match="int8 needs calibration clips"):
        optimize_for_inference(tiny(), runtime="onnxruntime", amp="int8")
    monkeypatch.setattr(optimize, "onnxruntime_available", lambda: False)  # without the extra nothing changes
    assert resolve_runtime("auto", "cpu", "none") == "torch"
    for runtime, amp in (("onnxruntime", "none"), ("auto", "int8")):
        with pytest.raises(ValueError, match=r"pip install 'r21d_zoo\[onnxruntime\]'"):
            resolve_runtime(runtime, "cpu", amp)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ort")
    videos = root / "videos"
    videos.mkdir()
    for i in range(3):
        make_video(videos / f"v{i}.mp4", num_frames=24 + 6 * i, size=(48, 64), fps=10)
    r21d_zoo.save_pretrained(tiny(), root / "tiny")
    return root


def run_extract(setup, out, *args) -> int:
    base = ["extract", str(setup / "videos"), "--model", f"local-dir:{setup / 'tiny'}", "-o", str(out)]
    return main([*base, "--workers", "0", *map(str, args)])


@pytest.mark.video
@pytest.mark.parametrize("layer", [[], ["--layer", "layer3", "--spatial-pool", "none"]], ids=["pooled", "map"])
def test_extract_on_onnxruntime_writes_torchs_features_and_resumes(setup, tmp_path, torch_home, layer, capsys):
    assert run_extract(setup, tmp_path / "torch", "--runtime", "torch", *layer) == 0
    (setup / "videos" / "v2.mp4").rename(setup / "v2.mp4")  # a first run over part of the videos ...
    try:
        assert run_extract(setup, tmp_path / "ort", "--runtime", "onnxruntime", *layer) == 0
    finally:
        (setup / "v2.mp4").rename(setup / "videos" / "v2.mp4")
    assert run_extract(setup, tmp_path / "ort", "--runtime", "onnxruntime", *layer) == 0  # ... resumed for the rest
    assert "1 extracted" in capsys.readouterr().out
    for i in range(3):
        a, b = (np.load(tmp_path / d / f"v{i}.npy") for d in ("torch", "ort"))
        assert a.shape == b.shape and a.ndim == (2 if not layer else 4)
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    assert list((torch_home / "r21d_zoo" / "onnx").glob("r2plus1d_18-*.onnx"))  # the graphs live in the hub cache


@pytest.mark.video
def test_int8_extraction_is_calibrated_checked_recorded_and_refused_when_it_disagrees(setup, tmp_path, torch_home,
                                                                                      monkeypatch, capsys):
    out = tmp_path / "int8"
    assert run_extract(setup, out, "--runtime", "eager", "--amp", "int8") == 2  # a usage error, before any work
    assert not out.exists()
    assert run_extract(setup, out, "--runtime", "auto", "--amp", "int8", "--calibration-clips", "4") == 0
    printed = capsys.readouterr().out
    assert "int8 vs float32 on 4 held-out clips: mean clip cosine" in printed
    settings = json.loads((out / "extraction.json").read_text())
    assert settings["quantization"]["dtype"] == "int8"
    assert settings["quantization"]["calibration"]["videos"] == ["v0", "v1"]  # 4 uniform clips per video, in order
    assert settings["quantization"]["calibration"]["clips"] == 4
    agreement = settings["int8_agreement"]
    assert agreement["clips"] == 4 and agreement["mean_cosine"] >= 0.99 and agreement["top1_agreement"] >= 0.95
    fp32 = tmp_path / "fp32"
    assert run_extract(setup, fp32, "--amp", "none") == 0
    a, b = np.load(fp32 / "v2.npy"), np.load(out / "v2.npy")
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.98 and not np.allclose(a, b, atol=1e-5)  # int8's own numbers, close to float32's

    # other calibration clips are other settings: refused on resume
    assert run_extract(setup, out, "--runtime", "auto", "--amp", "int8", "--calibration-clips", "2") == 3
    assert "quantization.calibration.clips: 4 -> 2" in capsys.readouterr().err

    monkeypatch.setattr(extract, "INT8_MIN_COSINE", 1.0)  # a tolerance these features cannot meet
    refused = tmp_path / "refused"
    assert run_extract(setup, refused, "--runtime", "onnxruntime", "--amp", "int8", "--calibration-clips", "4") == 3
    err = capsys.readouterr().err
    assert "int8 features agree too little with float32" in err and "--amp none" in err
    assert not list(refused.glob("*.npy")) and not (refused / "extraction.json").exists()  # refused before writing
    forced = ["--runtime", "onnxruntime", "--amp", "int8", "--calibration-clips", "4", "--force-int8"]
    assert run_extract(setup, refused, *forced) == 0
    assert len(list(refused.glob("v?.npy"))) == 3
