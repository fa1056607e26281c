"""Export to ONNX and torch.export: a dynamic batch axis, outputs equal to eager at a batch other than the example's."""

import pytest
import torch

import r21d_zoo
from r21d_zoo.cli import main
import util

TINY = dict(util.TINY, num_classes=5)
CLIP = (8, 48)  # frames, crop: the graph's fixed T, H, W


def tiny(name):
    torch.manual_seed(0)
    model = r21d_zoo.create_model(name, **TINY).eval()
    with torch.no_grad():  # non-trivial BatchNorm, so folding it is really tested
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("name", ["r2plus1d_18", "r3d_18", "ir_csn_50"])
def test_onnx_and_pt2_outputs_equal_eager_at_another_batch_size(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = tiny(name)
    x = torch.randn(3, 3, *[CLIP[0]], CLIP[1], CLIP[1])
    with torch.no_grad():
        expected = model(x)
    onnx_path = r21d_zoo.export(model, str(tmp_path / "m.onnx"), num_frames=CLIP[0], crop_size=CLIP[1])
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, outp.name) == ("clips", "logits") and inp.shape == ["batch", 3, 8, 48, 48]
    assert relative_error(torch.from_numpy(session.run(None, {"clips": x.numpy()})[0]), expected) < 1e-4
    pt2 = r21d_zoo.export(model, str(tmp_path / "m.pt2"), num_frames=CLIP[0], crop_size=CLIP[1])
    with torch.no_grad():
        assert relative_error(torch.export.load(pt2).module()(x), expected) < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.pt2"]  # no temp files left


def test_export_command_and_bad_suffix(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    model = tiny("r3d_18")
    model.pretrained_cfg.update(num_frames=4, crop_size=32)
    r21d_zoo.save_pretrained(model, str(tmp_path / "m"))
    out = tmp_path / "r3d.onnx"
    assert main(["export", f"local-dir:{tmp_path / 'm'}", "-o", str(out)]) == 0  # the model's own clip: 4 x 32
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, 4, 32, 32]
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        assert relative_error(torch.from_numpy(session.run(None, {"clips": x.numpy()})[0]), model(x)) < 1e-4
    assert main(["export", "r3d_18", "--random-weights", "-o", str(tmp_path / "m.tflite")]) == 3
    assert "must end in .onnx or .pt2" in capsys.readouterr().err
