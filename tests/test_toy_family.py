"""A second architecture family, registered from outside the package, goes through every path a model takes:
``create_model``, ``save_pretrained`` -> ``local-dir:``, ``extract``, a ``finetune`` step, ``export`` and its card.
Nothing outside ``models/`` may assume a VideoResNet for this to pass."""

import importlib
import sys

import numpy as np
import pytest
import torch

import r21d_zoo
from r21d_zoo.cli import main as cli_main
from r21d_zoo.data.labelled import read_labelled
from r21d_zoo.data.synthetic import make_motion_dataset
from r21d_zoo.infer.config import ModelSource
from r21d_zoo.jobs.finetune import FinetuneConfig, finetune
from r21d_zoo.train.optim import OptimConfig
from util import make_video


@pytest.fixture(scope="module")
def toy():
    """The toy family, registered for this module only (the registry is the docs' and the hub's source)."""
    r21d_zoo.list_models()  # the built-in families first
    registry = sys.modules["r21d_zoo.models._registry"]
    saved = {k: dict(getattr(registry, k)) for k in ("_model_entrypoints", "_model_default_cfgs")}
    module = importlib.import_module("toy_family")
    yield module
    for k, v in saved.items():
        getattr(registry, k).clear()
        getattr(registry, k).update(v)
    sys.modules.pop("toy_family", None)


@pytest.fixture(scope="module")
def saved(toy, tmp_path_factory):
    torch.manual_seed(0)
    model = r21d_zoo.create_model("toy_c3d").eval()
    path = tmp_path_factory.mktemp("toy") / "m"
    r21d_zoo.save_pretrained(model, path)
    return model, path


def test_the_toy_is_a_model_of_the_registry_and_not_a_video_resnet(toy):
    assert "toy_c3d" in r21d_zoo.list_models()
    model = r21d_zoo.create_model("toy_c3d", num_classes=5, drop_rate=0.1)
    assert isinstance(model, r21d_zoo.VideoModel) and not isinstance(model, r21d_zoo.VideoResNet)
    assert model(torch.randn(2, 3, 4, 28, 28)).shape == (2, 5)
    assert model.pretrained_cfg["pool_size"] == (2, 14, 14)
    with pytest.raises(TypeError, match=r"'depth' \(the arguments it takes: num_classes, in_chans, width, drop"):
        r21d_zoo.create_model("toy_c3d", depth=3)


def test_saved_toy_loads_back_from_its_folder_with_its_card(saved):
    model, path = saved
    back = r21d_zoo.create_model(f"local-dir:{path}")
    x = torch.randn(1, 3, 4, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)
    assert type(back).__name__ == "ToyC3D" and back.pretrained_cfg["label_names"] == ("a", "b", "c")
    card = (path / "README.md").read_text()
    assert "`toy_c3d`" in card and "a, b, c" in card and "4 frames" in card


@pytest.mark.video
def test_extract_runs_the_toy_from_the_command_line(saved, tmp_path):
    model, path = saved
    video = make_video(tmp_path / "v.mp4", num_frames=10, fps=10)
    out = tmp_path / "feats"
    args = ["extract", str(video), "--model", f"local-dir:{path}", "-o", str(out), "--workers", "0"]
    assert cli_main(args) == 0
    feats = np.load(out / "v.npy")
    assert feats.shape == (3, model.num_features) and np.isfinite(feats).all()  # 10 frames in clips of 4
    stem = r21d_zoo.extract_features(model, video, layer="stem").features
    assert stem.shape == (3, model.feature_info[0]["num_chs"])


@pytest.mark.video
def test_one_finetune_step_on_the_toy_gives_a_loadable_model(toy, tmp_path):
    train_csv, val_csv = make_motion_dataset(tmp_path, videos_per_class=2, val_per_class=1, num_frames=4, size=32)
    train, val = read_labelled(train_csv), read_labelled(val_csv, classes=["left", "right"])
    cfg = FinetuneConfig(
        model=ModelSource("toy_c3d", pretrained=False),
        batch_size=4,
        workers=0,
        amp=None,
        freeze_stages=1,
        optim=OptimConfig(lr=0.1, reference_batch=4, epochs=1, warmup_epochs=0),
        num_clips=1,
    )
    torch.manual_seed(0)
    start = r21d_zoo.create_model("toy_c3d", num_classes=2).state_dict()
    result = finetune(train, val, cfg, out_dir=tmp_path / "run", progress=False)
    assert np.isfinite(result.history[-1]["train_loss"])
    trained = r21d_zoo.create_model(f"local-dir:{result.final_dir}")
    assert trained.pretrained_cfg["label_names"] == ("left", "right")
    changed = {k.split(".")[0] for k, v in trained.state_dict().items() if not torch.equal(v, start[k])}
    assert changed == {"body", "head"}  # freeze_stages=1 kept the stem, found through feature_info


def test_export_of_the_toy_equals_eager(saved, tmp_path):
    model, path = saved
    assert cli_main(["export", f"local-dir:{path}", "-o", str(tmp_path / "toy.pt2")]) == 0
    x = torch.randn(2, 3, 4, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(torch.export.load(str(tmp_path / "toy.pt2")).module()(x), model(x))
