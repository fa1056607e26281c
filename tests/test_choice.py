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
    """``measure`` as it is, counting its calls."""
    calls = []
    real = choice.measure

    def measure(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(choice, "measure", measure)
    return calls


def test_auto_measures_once_keeps_the_fastest_and_reads_it_back(counted, tmp_path):
    model = r21d_zoo.create_model("r3d_18", num_classes=3, **TINY).eval()
    cache = tmp_path / "choice.json"
    first, record = choose_runtime(model, (2, 3, 4, 32, 32), "none", "cpu", cache, repeats=1)
    assert not record["cached"] and set(record["seconds"]) == set(candidates("cpu", "none"))
    assert first == min(record["seconds"], key=record["seconds"].get)  # the fastest measured
    again, record2 = choose_runtime(model, (2, 3, 4, 32, 32), "none", "cpu", cache, repeats=1)
    assert again == first and record2["cached"] and len(counted) == 1  # a second run does not re-measure
    choose_runtime(model, (4, 3, 4, 32, 32), "none", "cpu", cache, repeats=1)  # another batch: measured anew
    assert len(counted) == 2 and len(json.loads(cache.read_text())) == 2


def test_one_possible_runtime_is_taken_without_measuring(counted, tmp_path):
    model = r21d_zoo.create_model("r3d_18", num_classes=3, **TINY)
    assert choose_runtime(model, (1, 3, 4, 32, 32), "int8", "cpu", tmp_path / "c.json")[0] == "onnxruntime"
    assert candidates("cuda", "auto") == ["torch"] and not counted


def test_a_runner_on_auto_gives_eager_features(torch_home):
    """Whichever runtime auto takes, float32 features equal eager's within 1e-4 relative."""
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


def test_auto_beside_decoding_workers_is_eager(counted, tmp_path, torch_home):
    """End to end beside a decoding worker the optimised runtimes lost to eager (bench/bench_auto.py), so extraction
    with workers does not trust a model-only measurement; without workers it measures."""
    from r21d_zoo.data.inputs import VideoItem
    from r21d_zoo.infer.extraction import _beside_decoders
    from util import make_video

    assert _beside_decoders(InferenceOptions("cpu", "none", "auto"), 2).runtime == "eager"
    assert _beside_decoders(InferenceOptions("cpu", "none", "auto"), 0).runtime == "auto"
    assert _beside_decoders(InferenceOptions("cpu", "int8", "auto"), 2).runtime == "auto"  # int8: onnxruntime
    model = r21d_zoo.create_model("r3d_18", num_classes=3, **TINY).eval()
    model.pretrained_cfg.update(num_frames=4, resize_size=(32, 32), crop_size=28)
    items = [VideoItem(str(make_video(tmp_path / "v.mp4", num_frames=8, size=(32, 32))), "v")]
    from r21d_zoo.infer.extraction import run_extraction

    run_extraction(items, tmp_path / "f", model, ExtractConfig(), inference=InferenceOptions("cpu", "none", "auto"),
                   workers=1, progress=False)  # fmt: skip
    assert not counted
