"""Inflating 2D ResNets: the boring-video property, every 2D weight used, clear errors for incompatible models."""

import pytest
import timm
import torch
import torch.nn as nn
import torchvision

import r21d_zoo
from util import randomise_bn
from r21d_zoo.models import InflationError, inflate


def sources():
    return {
        "timm_resnet18": lambda: timm.create_model("resnet18", pretrained=False),
        "torchvision_resnet18": lambda: torchvision.models.resnet18(),
        "timm_resnet50": lambda: timm.create_model("resnet50", pretrained=False),
    }


def layer1_2d(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    act = getattr(model, "act1", None) or model.relu  # timm names it act1, torchvision relu
    return model.layer1(model.maxpool(act(model.bn1(model.conv1(x)))))


def boring(image: torch.Tensor, frames: int) -> torch.Tensor:
    return image.unsqueeze(2).expand(-1, -1, frames, -1, -1).contiguous()


class ReplicateTimePad(nn.Module):
    """Run a Conv3d with its temporal zero padding replaced by edge replication (test-only), so that for a clip of
    one repeated image every temporal position sees the same frames: the effect of temporal padding is excluded."""

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        self.conv, self.pt = conv, conv.padding[0]
        conv.padding = (0, *conv.padding[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pt:
            x = torch.cat([x[:, :, :1]] * self.pt + [x] + [x[:, :, -1:]] * self.pt, dim=2)
        return self.conv(x)


def replicate_time_padding(model: nn.Module) -> nn.Module:
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Conv3d) and child.padding[0]:
                setattr(module, child_name, ReplicateTimePad(child))
    return model


@pytest.mark.parametrize("name", ["timm_resnet18", "torchvision_resnet18", "timm_resnet50"])
def test_boring_video_first_stage_equals_the_2d_model_at_interior_positions(name):
    torch.manual_seed(0)
    net2d = randomise_bn(sources()[name]())
    video = inflate(net2d, "r3d", mode="repeat").eval()
    assert video.inflation_report.unused_2d == []
    image = torch.randn(2, 3, 64, 64)
    frames = 16
    with torch.inference_mode():
        ref = layer1_2d(net2d, image)
        out = video.forward_intermediates(boring(image, frames), indices=[1], intermediates_only=True)[0]
    convs_t3 = 1 + sum(  # temporal receptive margin: the stem plus every kt=3 conv of layer1
        1 for n, m in video.layer1.named_modules() if isinstance(m, nn.Conv3d) and m.kernel_size[0] == 3
    )
    interior = range(convs_t3, frames - convs_t3)
    assert len(interior) >= 4
    scale = float(ref.abs().max())  # float32 rounding of long sums grows with it and differs between CPUs' kernels
    for t in interior:
        torch.testing.assert_close(out[:, :, t], ref, rtol=1e-5, atol=1e-5 * scale)
    assert (out[:, :, 0] - ref).abs().max() > 1e-2 * scale  # the boundary really differs: zero padding in time


@pytest.mark.parametrize("name", ["timm_resnet18", "torchvision_resnet18"])
@pytest.mark.parametrize("family", ["r3d", "mc3", "fr2d"])
def test_boring_video_logits_equal_the_2d_logits_without_temporal_padding(name, family):
    torch.manual_seed(0)
    net2d = randomise_bn(sources()[name]())
    video = replicate_time_padding(inflate(net2d, family, mode="repeat")).eval()
    image = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(video(boring(image, 8)), net2d(image), rtol=1e-4, atol=1e-4)


def test_centre_mode_and_r2d_r2plus1d_families():
    torch.manual_seed(0)
    net2d = randomise_bn(torchvision.models.resnet18())
    image = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        ref = net2d(image)
        centre = replicate_time_padding(inflate(net2d, "r3d", mode="center")).eval()
        torch.testing.assert_close(centre(boring(image, 8)), ref, rtol=1e-4, atol=1e-4)
        r2d = inflate(net2d, "r2d", num_frames=8).eval()  # the stem's kernel spans the clip: no padding at all
        torch.testing.assert_close(r2d(boring(image, 8)), ref, rtol=1e-4, atol=1e-4)
        r21 = replicate_time_padding(inflate(net2d, "r2plus1d")).eval()
        stem_out = r21.stem(boring(image, 8))[:, :, 3]
        stem_ref = net2d.maxpool(net2d.relu(net2d.bn1(net2d.conv1(image))))
        torch.testing.assert_close(stem_out, stem_ref, rtol=1e-5, atol=1e-5)  # the (2+1)D stem is exact
    synth = inflate(net2d, "r2plus1d").inflation_report
    assert "stem.3.weight" in synth.synthesized and "layer1.0.conv2.0.3.weight" in synth.synthesized
    assert synth.unused_2d == [] and synth.reinitialized == []


def test_every_2d_weight_is_used_and_a_new_head_is_the_only_reinitialised_part():
    net2d = timm.create_model("resnet50", pretrained=False)
    video = inflate(net2d, "r3d", num_classes=10)
    report = video.inflation_report
    assert report.unused_2d == ["fc.bias", "fc.weight"]  # documented: the 1000-class head is replaced
    assert report.reinitialized == ["fc.bias", "fc.weight"]
    assert video.fc.out_features == 10 and video.pretrained_cfg["mean"] == (0.485, 0.456, 0.406)
    kept = inflate(torchvision.models.resnet34(), "r3d")
    assert kept.inflation_report.unused_2d == [] and kept.inflation_report.reinitialized == []
    assert [len(getattr(kept, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert sum(p.numel() for p in kept.parameters()) > sum(
        p.numel() for p in torchvision.models.resnet34().parameters()
    )


def test_state_dict_source_and_incompatible_models_fail_clearly():
    sd = torchvision.models.resnet18().state_dict()
    assert isinstance(inflate(sd, "r3d"), r21d_zoo.VideoResNet)
    with pytest.raises(InflationError, match="deep stem"):
        inflate(timm.create_model("resnet18d", pretrained=False))
    with pytest.raises(InflationError, match="no video counterpart"):
        inflate(timm.create_model("seresnet18", pretrained=False))
    with pytest.raises(InflationError, match="2D filter is"):
        inflate(torchvision.models.wide_resnet50_2())
    with pytest.raises(ValueError, match="family must be one of"):
        inflate(sd, "c3d")


def test_inflated_model_runs_through_the_video_pipeline():
    video = inflate(torchvision.models.resnet18(), "r3d", num_classes=4)
    x = r21d_zoo.create_transform(video)(torch.randint(0, 256, (16, 240, 320, 3), dtype=torch.uint8))
    assert x.shape == (1, 3, 16, 224, 224)
    with torch.inference_mode():
        assert video(x[:, :, :4, :64, :64]).shape == (1, 4)


@pytest.mark.parametrize("family", ["r3d", "r2plus1d"])
def test_inflated_model_round_trips_through_save_pretrained_and_its_card_names_the_2d_source(family, tmp_path):
    from huggingface_hub import ModelCard

    torch.manual_seed(0)
    net2d = randomise_bn(timm.create_model("resnet18", pretrained=False))
    video = inflate(net2d, family, num_classes=5).eval()
    cfg = video.pretrained_cfg
    assert cfg["architecture"] == f"{family}_18" and cfg.get("tag") is None  # a registered architecture, no tag
    assert cfg["base_model"] == "timm/resnet18.a1_in1k" and not cfg.get("url") and not cfg.get("metrics")
    out = r21d_zoo.save_pretrained(video, str(tmp_path / family))
    loaded = r21d_zoo.create_model(f"local-dir:{out}").eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.inference_mode():
        assert torch.equal(loaded(x), video(x))
    assert loaded.pretrained_cfg["base_model"] == "timm/resnet18.a1_in1k"
    assert loaded.pretrained_cfg["mean"] == (0.485, 0.456, 0.406) and loaded.pretrained_cfg["crop_size"] == 224
    text = (tmp_path / family / "README.md").read_text()
    card = ModelCard(text)
    assert card.data.base_model == "timm/resnet18.a1_in1k" and not card.data.datasets
    assert card.data.license == net2d.pretrained_cfg["license"] == "apache-2.0"  # the 2D weights' licence, from timm
    assert "kinetics" not in text.lower() and f"# Model card for {family}_18 (derived from `timm/resnet18" in text
    tv = inflate(torchvision.models.resnet34(), family)
    assert tv.pretrained_cfg["base_model"] == "torchvision ResNet-34" and tv.pretrained_cfg["architecture"].endswith(
        "_34"
    )
