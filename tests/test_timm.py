"""timm interop: after ``import r21d_zoo``, timm's registry and factory give the same models as r21d_zoo's."""

import json

import pytest
import timm
import torch

import r21d_zoo
from util import TINY
from test_pretrained import _fake_hub_cache

VIDEO_FIELDS = ("num_frames", "frame_rate", "sampling_stride", "resize_size", "crop_size", "mean", "std", "label_names")


def test_timm_lists_every_architecture_and_weight():
    assert timm.list_models("r2plus1d*") == r21d_zoo.list_models("r2plus1d*")
    assert set(r21d_zoo.list_models()) <= set(timm.list_models())
    assert set(r21d_zoo.list_pretrained()) <= set(timm.list_models(pretrained=True))
    cfg = timm.models.get_pretrained_cfg("r2plus1d_34.ig65m_ft_kinetics400_32f")
    assert (
        cfg.input_size == (3, 32, 112, 112)
        and cfg.num_classes == 400
        and cfg.mean == r21d_zoo.get_pretrained_cfg("r2plus1d_34.ig65m_ft_kinetics400_32f").clip.mean
    )


@pytest.mark.parametrize("name", r21d_zoo.list_models())
def test_timm_builds_every_architecture_like_r21d_zoo(name):
    with torch.device("meta"):
        ours, theirs = r21d_zoo.create_model(name), timm.create_model(name)
    assert type(theirs) is type(ours)
    assert {k: v.shape for k, v in theirs.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}
    assert theirs.pretrained_cfg == ours.pretrained_cfg


def test_timm_loads_save_pretrained_folders_from_disk_and_the_hub(tmp_path):
    torch.manual_seed(0)
    model = r21d_zoo.create_model("r2plus1d_34.ig65m_32f", num_classes=3, **TINY).eval()
    model.pretrained_cfg.update(num_frames=8, crop_size=32, label_names=("a", "b", "c"), label_set=None)
    out = tmp_path / "saved"
    r21d_zoo.save_pretrained(model, str(out))
    cache = tmp_path / "hf"
    _fake_hub_cache(cache, "acme/tiny", out)
    x = torch.randn(2, 3, 8, 32, 32)
    ours = r21d_zoo.create_model(f"local-dir:{out}").eval()
    with torch.no_grad():
        expected = ours(x)
        for name, kwargs in ((f"local-dir:{out}", {}), ("hf-hub:acme/tiny", dict(cache_dir=str(cache)))):
            theirs = timm.create_model(name, **kwargs).eval()
            assert torch.equal(theirs(x), expected), name
            assert {k: theirs.pretrained_cfg.get(k) for k in VIDEO_FIELDS} == {
                k: ours.pretrained_cfg.get(k) for k in VIDEO_FIELDS
            }
    assert json.loads((out / "config.json").read_text())["architecture"] == "r2plus1d_34"
