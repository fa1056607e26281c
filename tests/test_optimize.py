"""Every inference optimisation keeps outputs within its stated tolerance of the eager float32 model."""

import shutil

import pytest
import torch
import torch.nn as nn

import r21d_zoo
from util import randomise_bn
from r21d_zoo.deploy.batchnorm import fold_batchnorm
from r21d_zoo.deploy.optimize import optimize_for_inference
from r21d_zoo.infer.config import InferenceOptions

ARCHS = ["r2plus1d_18", "r3d_18", "mc3_18", "r2plus1d_50", "ir_csn_50", "ip_csn_50"]


def tiny(arch: str) -> nn.Module:
    return randomise_bn(r21d_zoo.create_model(arch, channel_multiplier=0.25, num_classes=7))


@pytest.mark.parametrize("arch", ARCHS)
def test_batchnorm_folding_removes_every_bn_and_keeps_outputs(arch):
    model = tiny(arch)
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.inference_mode():
        ref = model(x)
    opt = optimize_for_inference(model, channels_last=False)
    remaining = [n for n, m in opt.model.named_modules() if isinstance(m, nn.BatchNorm3d)]
    assert remaining == []
    with torch.inference_mode():
        torch.testing.assert_close(opt(x), ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(
            opt.forward_head(opt.forward_features(x), pre_logits=True),
            model.forward_head(model.forward_features(x), pre_logits=True),
            rtol=1e-4,
            atol=1e-4,
        )
    assert any(isinstance(m, nn.BatchNorm3d) for m in model.modules()), "the original model must be left untouched"


def test_fold_counts_and_refuses_training_mode():
    model = tiny("r2plus1d_18")
    n_bn = sum(isinstance(m, nn.BatchNorm3d) for m in model.modules())
    assert fold_batchnorm(model) == n_bn
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(tiny("r3d_18").train())


def test_channels_last_3d_keeps_outputs_and_intermediates():
    model = tiny("r2plus1d_18")
    x = torch.randn(1, 3, 8, 32, 32)
    opt = optimize_for_inference(model, fold_bn=False, channels_last=True, torchscript=False)
    assert opt.model.stem[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        torch.testing.assert_close(opt(x), model(x), rtol=1e-4, atol=1e-4)
        for a, b in zip(
            opt.forward_intermediates(x, intermediates_only=True),
            model.forward_intermediates(x, intermediates_only=True),
        ):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_torchscript_path_is_traced_once_and_serves_any_shape():
    model = tiny("r2plus1d_18")
    opt = optimize_for_inference(model)  # CPU default: BN folded + TorchScript optimize_for_inference
    assert opt.torchscript and not opt.place.channels_last
    with torch.inference_mode():
        for shape in ((1, 3, 8, 32, 32), (3, 3, 8, 32, 32), (2, 3, 16, 40, 48)):
            x = torch.randn(shape)
            torch.testing.assert_close(opt(x), model(x), rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(opt.forward_features(x), model.forward_features(x), rtol=1e-4, atol=1e-4)
    assert set(opt._scripted) == {"forward", "features"}
    with pytest.raises(ValueError, match="does not combine"):
        optimize_for_inference(model, torchscript=True, amp="bf16")


def test_bf16_autocast_stays_close():
    model = tiny("r2plus1d_18")
    x = torch.randn(1, 3, 8, 32, 32)
    opt = optimize_for_inference(model, amp="bf16")
    with torch.inference_mode():
        out, ref = opt(x), model(x)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.05 * ref.abs().max() + 0.05  # bf16 has 8 mantissa bits
    with pytest.raises(ValueError, match="amp must be one of"):
        optimize_for_inference(model, amp="int4")
    with pytest.raises(ValueError, match="int8 runs on the onnxruntime runtime"):
        optimize_for_inference(model, amp="int8")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="inductor needs a C++ compiler")
def test_torch_compile_keeps_outputs():
    model = tiny("r2plus1d_18")
    x = torch.randn(1, 3, 8, 32, 32)
    opt = optimize_for_inference(model, compile=True)
    with torch.inference_mode():
        torch.testing.assert_close(opt(x), model(x), rtol=1e-3, atol=1e-3)


@pytest.mark.video
def test_extraction_with_the_optimised_model_matches_eager(tmp_path):
    from util import make_video

    model = tiny("r2plus1d_18")
    model.pretrained_cfg.update(num_frames=8, resize_size=(40, 53), crop_size=32)
    path = make_video(tmp_path / "v.mp4", num_frames=20)
    eager = r21d_zoo.extract_features(model, path)
    fast = r21d_zoo.extract_features(model, path, inference=InferenceOptions(runtime="torch"))
    assert fast.features.shape == eager.features.shape == (3, model.num_features)
    torch.testing.assert_close(torch.from_numpy(fast.features), torch.from_numpy(eager.features), rtol=1e-4, atol=1e-4)
    deprecated = r"optimize=\.\.\.\) is deprecated .* use inference=InferenceOptions\(runtime="
    with pytest.warns(FutureWarning, match=deprecated):
        old = r21d_zoo.extract_features(model, path, optimize=True)
    torch.testing.assert_close(torch.from_numpy(old.features), torch.from_numpy(fast.features))
