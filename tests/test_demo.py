"""`r21d-zoo demo`, the README's main job: synthesise a clip, run a model, report; never needs the network."""

import urllib.error

import av
import pytest
import torch

import r21d_zoo.models._loading as loading
from r21d_zoo.cli import main as cli_main
from r21d_zoo.infer.config import ModelSource
from r21d_zoo.jobs.demo import run_demo, synthesize_clip
from r21d_zoo.video import read_clip
from util import TINY

pytestmark = pytest.mark.video


def test_synthesized_clip_is_real_h264(tmp_path):
    path = synthesize_clip(str(tmp_path / "clip.mp4"), num_frames=20, size=(96, 128))
    with av.open(path) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    frames = read_clip(path, 0.0, num_frames=20).frames
    assert tuple(frames.shape) == (20, 96, 128, 3)
    assert (frames[0] != frames[-1]).any()  # the square moves


def test_demo_falls_back_to_random_weights_with_a_clear_message(monkeypatch, capsys, torch_home):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(loading, "download_url", offline)
    assert cli_main(["demo", "--model", "r2plus1d_18.kinetics400_8f"]) == 0
    out = capsys.readouterr().out
    assert "FALLING BACK TO RANDOM WEIGHTS" in out and "--checkpoint FILE" in out and "checkpoint_path=" not in out
    assert "input clip: (1, 3, 8, 112, 112)" in out and "feature map: (1, 512, 1, 7, 7)" in out
    assert "clips/s" in out and out.count("\n  ") >= 5


def test_demo_result_fields(torch_home):
    result = run_demo(ModelSource("mc3_18.tv_kinetics400_16f", pretrained=False, model_args=TINY), repeats=1)
    assert result["pretrained"] is False and len(result["predictions"]) == 5
    tiny = ModelSource("r2plus1d_18", pretrained=False, model_args=TINY)
    torch.manual_seed(0)
    eager = run_demo(tiny, repeats=1)
    torch.manual_seed(0)
    ort = run_demo(tiny, repeats=1, runtime="onnxruntime")  # the same answer from onnxruntime
    assert ort["runtime"] == "onnxruntime"
    assert [p[0] for p in ort["predictions"]] == [p[0] for p in eager["predictions"]]
    assert max(abs(a[1] - b[1]) for a, b in zip(ort["predictions"], eager["predictions"])) < 1e-4
    assert all(isinstance(label, str) for label, _ in result["predictions"]) and result["clips_per_s"] > 0
    assert result["feature_shape"] == (1, 64, 16, 7, 7)  # MC3: layers 2-4 are 2D, time is never strided


@pytest.mark.parametrize(
    "content",
    [b"", b"not weights at all", b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."],
    ids=["empty", "garbage", "malicious"],
)
def test_a_named_checkpoint_that_cannot_be_used_is_an_error_not_a_fallback(content, tmp_path, capsys):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(content)
    assert cli_main(["demo", "--model", "r2plus1d_18.kinetics400_8f", "--checkpoint", str(bad)]) == 3
    captured = capsys.readouterr()
    assert str(bad) in captured.err and "FALLING BACK" not in captured.out and "top-5" not in captured.out
    assert "weights_only=False" not in captured.err
