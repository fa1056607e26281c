"""Architecture tests, generated from the registry (every architecture gets every check)."""

import math

import pytest
import json
import torch
import torchvision.models.video as tv_video
from torch.utils.flop_counter import FlopCounterMode

import r21d_zoo
from util import TINY

ARCHS = r21d_zoo.list_models()


def tiny(name, **kwargs):
    """A small version of ``name`` for 8-frame clips (R2D's stem kernel spans the clip, so it needs num_frames)."""
    extra = dict(num_frames=8) if name.startswith("r2d") else {}
    return r21d_zoo.create_model(name, **TINY, **extra, **kwargs)


def _meta_stats(name, input_size=(1, 3, 32, 112, 112), **kwargs):
    with torch.device("meta"):
        model = r21d_zoo.create_model(name, **kwargs)
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(*input_size))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() / 2


@pytest.mark.parametrize(
    "name,params_m,gmacs",
    [("r2plus1d_18", 33, 83), ("r2plus1d_34", 64, 152), ("r2plus1d_101", 86, 176), ("r2plus1d_152", 118, 252)],
)
def test_paper_table2_params_and_macs(name, params_m, gmacs):
    """Ghadiyaram et al. 2019, Table 2: 400 classes, 32x112x112 input; its "GFLOPs" are multiply-accumulates."""
    params, macs = _meta_stats(name, num_classes=400)
    assert abs(params / 1e6 - params_m) <= 0.6
    assert abs(macs / 1e9 - gmacs) <= 0.6


@pytest.mark.parametrize(
    "name,expected",
    [
        ("r2plus1d_18.tv_kinetics400_16f", 31_505_325),
        ("mc3_18.tv_kinetics400_16f", 11_695_440),
        ("r3d_18.tv_kinetics400_16f", 33_371_472),
        # VMZ caffe2 widths (reference file, section b5)
        ("r2plus1d_18", 33_370_839),
        ("r2plus1d_34", 63_697_175),
        ("r2plus1d_152", 118_226_785),
    ],
)
def test_exact_parameter_counts(name, expected):
    assert _meta_stats(name, input_size=(1, 3, 8, 32, 32))[0] == expected


def test_caffe2_mid_widths_are_per_conv():
    with torch.device("meta"):
        m = r21d_zoo.create_model("r2plus1d_34")
        tv = r21d_zoo.create_model("r2plus1d_18.tv_kinetics400_16f")
        b = r21d_zoo.create_model("r2plus1d_152")
    assert m.stem[0].out_channels == 45
    # first block of layer2: conv1 is 64->128 (230), conv2 is 128->128 (288, torchvision would use 230)
    assert m.layer2[0].conv1[0][0].out_channels == 230 and m.layer2[0].conv2[0][0].out_channels == 288
    assert tv.layer2[0].conv2[0][0].out_channels == 230
    assert [
        b.layer1[0].conv2[0][0].out_channels,
        b.layer2[1].conv2[0][0].out_channels,
        b.layer3[0].conv2[0][0].out_channels,
        b.layer4[2].conv2[0][0].out_channels,
    ] == [144, 288, 576, 1152]


def test_bn_eps_and_momentum_follow_weights():
    with torch.device("meta"):
        caffe2 = r21d_zoo.create_model("r2plus1d_34.ig65m_32f")
        tv = r21d_zoo.create_model("r2plus1d_18.tv_kinetics400_16f")
    bns = [m for m in caffe2.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert all(m.eps == 1e-3 and m.momentum == 0.1 for m in bns)
    assert all(m.eps == 1e-5 for m in tv.modules() if isinstance(m, torch.nn.BatchNorm3d))
    assert caffe2.fc.out_features == 359


def test_csn_uses_pool1_and_depthwise_convs():
    with torch.device("meta"):
        ir = r21d_zoo.create_model("ir_csn_152")
        ip = r21d_zoo.create_model("ip_csn_152")
    assert isinstance(ir.stem[-1], torch.nn.MaxPool3d) and isinstance(ip.stem[-1], torch.nn.MaxPool3d)
    assert ir.layer3[5].conv2[0].groups == 256 and tuple(ir.layer3[5].conv2[0].weight.shape) == (256, 1, 3, 3, 3)
    assert tuple(ip.layer2[0].conv2[0][0].weight.shape) == (128, 128, 1, 1, 1)
    assert ip.layer2[0].conv2[0][2].groups == 128


@pytest.mark.parametrize("name", ARCHS)
def test_forward_backward_and_checkpointing(name):
    model = tiny(name, num_classes=7)
    x = torch.randn(2, 3, 8, 32, 32)
    model.train()
    out = model(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"

    model.eval()
    x.requires_grad_(True)
    ref = model(x)
    (g_ref,) = torch.autograd.grad(ref.sum(), x)
    model.set_grad_checkpointing(True)
    out = model(x)
    (g_ckpt,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(g_ckpt, g_ref)


@pytest.mark.parametrize("name", ARCHS)
def test_head_interface(name):
    model = tiny(name, num_classes=7).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        assert feats.shape[1] == model.num_features and pre.shape == (1, model.num_features)
        assert model.get_classifier() is model.fc and model.get_classifier(name_only=True) == "fc"
        model.reset_classifier(0)
        pooled = model(x)
    assert pooled.shape == (1, model.num_features)
    torch.testing.assert_close(pooled, pre)


@pytest.mark.parametrize("name", ARCHS)
def test_features_only_matches_feature_info(name):
    model = tiny(name, features_only=True).eval()
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        maps = model(x)
    info = model.feature_info
    assert len(maps) == len(info) == 5
    for fmap, chs, red, tred in zip(maps, info.channels(), info.reduction(), info.temporal_reduction()):
        assert fmap.shape[1] == chs
        assert fmap.shape[-1] == math.ceil(64 / red)
        if name.startswith("r2d"):
            assert fmap.shape[2] == 1  # the stem spans the whole clip
        else:
            assert fmap.shape[2] == math.ceil(8 / tred)
    assert "fc.weight" not in model.state_dict()


@pytest.mark.parametrize("name", ARCHS)
def test_fully_convolutional_head(name):
    """fc as a 1x1x1 conv on a 160x160 input: a score map whose mean equals the pooled logits."""
    model = tiny(name, num_classes=5).eval()
    x = torch.randn(1, 3, 8, 160, 160)
    fc_state = {k: v.clone() for k, v in model.fc.state_dict().items()}
    with torch.no_grad():
        pooled = model(x)
        model.reset_classifier(5, global_pool="")
        model.fc.load_state_dict(fc_state)
        dense = model(x)
    red = model.feature_info[-1]["reduction"]
    assert dense.dim() == 5 and dense.shape[:2] == (1, 5) and dense.shape[-2:] == (math.ceil(160 / red),) * 2
    torch.testing.assert_close(dense.mean(dim=(2, 3, 4)), pooled, rtol=1e-4, atol=1e-5)


def test_forward_intermediates_indices():
    model = r21d_zoo.create_model("r2plus1d_18", **TINY).eval()
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        last, inter = model.forward_intermediates(x, indices=2)
        only = model.forward_intermediates(x, indices=[-1], intermediates_only=True)
        full = model.forward_features(x)
    assert [t.shape[1] for t in inter] == [32, 64]
    torch.testing.assert_close(last, full)
    torch.testing.assert_close(only[0], full)
    with pytest.raises(ValueError):
        model.forward_intermediates(x, indices=[7])


def test_options_in_chans_dropout_zero_init():
    model = r21d_zoo.create_model("r2plus1d_18", in_chans=2, drop_rate=0.5, zero_init_residual=True, **TINY)
    assert model.stem[0].in_channels == 2
    assert model(torch.randn(2, 2, 8, 32, 32)).shape == (2, 400)
    assert all(float(b.conv2[1].weight.detach().abs().sum()) == 0 for b in model.layer1)
    bottleneck = r21d_zoo.create_model("r3d_50", zero_init_residual=True, **TINY)
    assert float(bottleneck.layer2[0].conv3[1].weight.detach().abs().sum()) == 0
    pooled = r21d_zoo.create_model("r2plus1d_18", pool1=True, **TINY)
    assert isinstance(pooled.stem[-1], torch.nn.MaxPool3d) and pooled.feature_info[1]["reduction"] == 4


@pytest.mark.parametrize(
    "tv_name,ours",
    [
        ("r2plus1d_18", "r2plus1d_18.tv_kinetics400_16f"),
        ("r3d_18", "r3d_18.tv_kinetics400_16f"),
        ("mc3_18", "mc3_18.tv_kinetics400_16f"),
    ],
)
def test_torchvision_state_dict_loads_strictly_with_same_logits(tv_name, ours):
    reference = getattr(tv_video, tv_name)().eval()
    for m in reference.modules():  # non-trivial BN statistics so eps and ordering matter
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
    model = r21d_zoo.create_model(ours).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)


def test_unknown_name_lists_close_matches():
    with pytest.raises(KeyError, match="r2plus1d_34"):
        r21d_zoo.create_model("r2plus1d_43")
    with pytest.raises(KeyError, match="ig65m_32f"):
        r21d_zoo.create_model("r2plus1d_34.ig65m_23f")
    with pytest.raises(ValueError, match="local-dir:"):
        r21d_zoo.create_model("/tmp/some/dir")


def test_bad_architecture_arguments():
    with pytest.raises(ValueError, match="mid_width"):
        r21d_zoo.create_model("r2plus1d_18", mid_width="sometimes")
    with pytest.raises(ValueError, match="bn_eps"):
        r21d_zoo.create_model("r2plus1d_34.ig65m_32f", pretrained=True, bn_eps=1e-5)


def test_checkpointed_training_step_updates_batchnorm_statistics_once():
    """The backward pass recomputes checkpointed blocks; their BatchNorms must not count that batch twice."""
    x = torch.randn(2, 3, 8, 32, 32)
    states = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = tiny("r2plus1d_50", num_classes=3).train()
        model.set_grad_checkpointing(ckpt)
        model(x).sum().backward()
        states.append(model.state_dict())
    for key, value in states[0].items():
        torch.testing.assert_close(states[1][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert int(states[1]["layer1.0.conv1.1.num_batches_tracked"]) == 1


def test_feature_api_has_timms_signatures_and_pruning():
    import inspect

    from timm.models._features import FeatureInfo as TimmFeatureInfo
    from timm.models.resnet import ResNet

    ours = r21d_zoo.VideoResNet
    for method in ("forward_intermediates", "prune_intermediate_layers"):
        assert list(inspect.signature(getattr(ours, method)).parameters) == list(
            inspect.signature(getattr(ResNet, method)).parameters
        ), method
    model = r21d_zoo.create_model("r2plus1d_18", **TINY).eval()
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        maps = model.forward_intermediates(x, [1, 3], False, True, "NCTHW", True)  # timm's positional order
        assert [m.shape[1] for m in maps] == [8, 32]
        with pytest.raises(ValueError, match="NCTHW"):
            model.forward_intermediates(x, output_fmt="NHWC")
        assert model.prune_intermediate_layers(indices=[1, 3]) == [1, 3]
        assert isinstance(model.layer4, torch.nn.Identity) and model.num_classes == 0
        torch.testing.assert_close(model(x), maps[1])  # the pruned model ends at layer3, unpooled
    features = r21d_zoo.create_model("r2plus1d_18", features_only=True, out_indices=(2, 4), **TINY)
    info = features.feature_info
    assert info.out_indices == (2, 4) and info.channels() == [16, 64] and info.channels(0) == 8
    assert info.get("module") == ["layer2", "layer4"] and info.get("reduction", [0, 1]) == [2, 2]
    assert info.get_dicts(keys=["num_chs"]) == [{"num_chs": 16}, {"num_chs": 64}]
    for method in ("get", "get_dicts", "channels", "reduction", "module_name"):
        assert list(inspect.signature(getattr(type(info), method)).parameters) == list(
            inspect.signature(getattr(TimmFeatureInfo, method)).parameters
        ), method


def test_random_weights_claim_no_licence_and_record_their_seed(tmp_path):
    """Weights that were never loaded are not VMZ's: the API's save_pretrained of an unloaded model and the jobs'
    --random-weights (seeded, so a replayed config.yaml answers alike) claim no licence, tag or results."""
    from r21d_zoo.infer.config import RANDOM_SEED, ModelSource

    model = r21d_zoo.create_model("r2plus1d_18.kinetics400_16f", channel_multiplier=0.125)
    assert model.pretrained_cfg["license_name"] == "vmz-weights-no-licence-stated"  # timm's in-memory convention
    r21d_zoo.save_pretrained(model, tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["pretrained_cfg"]
    assert saved.get("license_name") is None and saved.get("tag") is None and not saved.get("metrics")
    assert saved["labels"][:2] == ["abseiling", "air drumming"]  # the label space it answers in stays
    assert "vmz" not in (tmp_path / "m" / "README.md").read_text().lower()
    source = ModelSource("r2plus1d_18", pretrained=False, model_args=dict(channel_multiplier=0.125))
    a, b = source.create(seed=RANDOM_SEED), source.create(seed=RANDOM_SEED)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert a.pretrained_cfg.get("license_name") is None and f"Seed {RANDOM_SEED}." in a.pretrained_cfg["notes"]
