"""``runtime="auto"`` by measurement: timed once per model shape, clip, batch, precision and machine, cached, and the
same features as eager (the choice changes speed, never outputs)."""

import json

import pytest
import torch

import r21d_zoo
import r21d_zoo.deploy.choice as choice
from r21d_zoo.deploy.choice import candidates, choose_runtime
from r21d_zoo.infer.config import ExtractConfig, InferenceOptions
from r21d_zoo.infer.features import FeatureRunner
from r21d_zoo.models import ClipSpec
from util import TINY


@pytest.fixture
def counted(monkeypatch):
    """``measure`` as it is, recording each call's clips and runtimes."""
    calls = []
    real = choice.measure

    def measure(*args, **kwargs):
        calls.append((args[1], list(args[4]), args[5]))
        return real(*args, **kwargs)

    monkeypatch.setattr(choice, "measure", measure)
    return calls


def test_auto_measures_once_keeps_the_fastest_and_reads_it_back(counted, tmp_path):
    model = r21d_zoo.create_model("r3d_18", num_classes=3, **TINY).eval()
    cache = tmp_path / "choice.json"
    first, record = choose_runtime(model, (2, 3, 4, 32, 32), "none", "cpu", cache, repeats=1, quick=0)
    assert not record["cached"] and set(record["seconds"]) == set(candidates("cpu", "none"))
    assert first == min(record["seconds"], key=record["seconds"].get)  # the fastest measured
    again, record2 = choose_runtime(model, (2, 3, 4, 32, 32), "none", "cpu", cache, repeats=1, quick=0)
    assert again == first and record2["cached"] and len(counted) == 3  # eager alone twice, then all; then nothing
    choose_runtime(model, (4, 3, 4, 32, 32), "none", "cpu", cache, repeats=1, quick=0)  # another batch: anew
    assert len(counted) == 6 and len(json.loads(cache.read_text())) == 2


def test_a_quick_model_stays_eager_without_exporting(counted, tmp_path, caplog):
    """A model whose eager call is quicker than QUICK_CALL_S is not exported or traced to find out."""
    model = r21d_zoo.create_model("r3d_18", num_classes=3, **TINY).eval()
    caplog.set_level("INFO", "r21d_zoo.deploy.choice")
    runtime, record = choose_runtime(model, (1, 3, 4, 32, 32), "none", "cpu", tmp_path / "c.json", quick=10.0)
    assert runtime == "eager" and [c[1] for c in counted] == [["eager"]] * 2 and list(record["seconds"]) == ["eager"]
    assert "too quick for another runtime to pay off" in caplog.text
    assert not (tmp_path / "torch" / "hub" / "r21d_zoo" / "onnx").exists()


def test_a_slow_call_is_timed_once_per_runtime(counted, tmp_path, monkeypatch):
    """Past SLOW_CALL_S a call is timed once (after its warm-up) per runtime, eager first alone: half the calls."""
    monkeypatch.setattr(choice, "SLOW_CALL_S", 0.0)  # every call counts as slow
    model = r21d_zoo.create_model("r3d_18", num_classes=3, **TINY).eval()
    choose_runtime(model, (1, 3, 4, 32, 32), "none", "cpu", tmp_path / "c.json", repeats=3, quick=0)
    assert [(c[1], c[2]) for c in counted] == [(["eager"], 1), (candidates("cpu", "none"), 1)]


def test_one_possible_runtime_is_taken_without_measuring(counted, tmp_path):
    model = r21d_zoo.create_model("r3d_18", num_classes=3, **TINY)
    assert choose_runtime(model, (1, 3, 4, 32, 32), "int8", "cpu", tmp_path / "c.json")[0] == "onnxruntime"
    assert candidates("cuda", "auto") == ["eager"] and not counted  # a GPU: eager under bf16 autocast


def test_a_runner_on_auto_gives_eager_features(torch_home, monkeypatch):
    """Whichever runtime auto takes, float32 features equal eager's within 1e-4 relative."""
    monkeypatch.setattr(choice, "QUICK_CALL_S", 0.0)  # a real choice, even for this tiny model
    torch.manual_seed(0)
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=3, **TINY).eval()
    spec = ClipSpec(num_frames=4, resize_size=32, crop_size=28)
    cfg = ExtractConfig(batch_size=2)
    frames = torch.randint(0, 255, (2, 4, 32, 32, 3), dtype=torch.uint8)
    auto = FeatureRunner(model, spec, cfg, InferenceOptions("cpu", "none", "auto"))
    eager = FeatureRunner(model, spec, cfg, InferenceOptions("cpu", "none", "eager"))
    assert auto.runtime in candidates("cpu", "none") and eager.runtime == "eager"
    got, want = auto(frames), eager(frames)
    assert ((got - want).abs().max() / want.abs().max()).item() < 1e-4
    saved = json.loads((torch_home / "r21d_zoo" / "runtime_choice.json").read_text())
    assert [r["runtime"] for r in saved.values()] == [auto.runtime]


def test_an_unwritable_cache_still_chooses(tmp_path, caplog):
    model = r21d_zoo.create_model("r3d_18", num_classes=3, **TINY)
    blocked = tmp_path / "file"
    blocked.write_text("")
    runtime, _ = choose_runtime(model, (1, 3, 4, 32, 32), "none", "cpu", blocked / "choice.json", repeats=1)
    assert runtime in candidates("cpu", "none") and "cannot cache the choice" in caplog.text


def test_auto_beside_decoding_workers_leaves_torch_out(counted, tmp_path, torch_home, monkeypatch):
    """End to end beside a decoding worker the torch runtime lost to eager (bench/bench_auto.py), so extraction with
    workers chooses among eager and onnxruntime; without workers among all. Either way it times clips laid out as
    the runner's transform makes them (channels-last strides), not random contiguous ones."""
    from r21d_zoo.data.inputs import VideoItem
    from r21d_zoo.infer.extraction import run_extraction
    from util import make_video

    monkeypatch.setattr(choice, "QUICK_CALL_S", 0.0)  # time every candidate, even for this tiny model
    assert "torch" not in candidates("cpu", "none", beside_decoders=True)
    model = r21d_zoo.create_model("r3d_18", num_classes=3, **TINY).eval()
    model.pretrained_cfg.update(num_frames=4, resize_size=(32, 32), crop_size=28)
    items = [VideoItem(str(make_video(tmp_path / "v.mp4", num_frames=8, size=(32, 32))), "v")]
    for workers in (1, 0):
        run_extraction(items, tmp_path / f"f{workers}", model, ExtractConfig(batch_size=2), workers=workers,
                       inference=InferenceOptions("cpu", "none"), progress=False)  # fmt: skip
    (beside, tried_beside, _), (alone, tried_alone, _) = counted[2], counted[5]
    assert tried_beside == candidates("cpu", "none", beside_decoders=True) and "torch" in tried_alone
    for clips in (beside, alone):
        assert clips.shape == (2, 3, 4, 28, 28) and clips.is_contiguous(memory_format=torch.channels_last_3d)
        assert not clips.is_contiguous()
