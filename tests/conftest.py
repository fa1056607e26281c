import os

# huggingface_hub reads these at import: never touch the network from tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("R21D_ZOO_RETRIES", "0")  # no back-off sleeps; the retry test sets its own

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache, so URL downloads land in tmp_path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.hub.set_dir(str(tmp_path / "torch" / "hub"))
    yield tmp_path / "torch" / "hub"
    torch.hub.set_dir(os.path.join(os.path.expanduser(os.getenv("XDG_CACHE_HOME", "~/.cache")), "torch", "hub"))


MOTION_CLIP = dict(num_frames=8, resize_size=(32, 32), crop_size=28)


@pytest.fixture(scope="session")
def motion_model(tmp_path_factory):
    """R(2+1)D-18 (a quarter wide) fine-tuned on left/right motion, saved as a local-dir model with its labels (8
    frames, 32 px, crop 28): predict's and the live path's tests share it."""
    from r21d_zoo.data.labelled import read_labelled
    from r21d_zoo.data.synthetic import make_motion_dataset
    from r21d_zoo.deploy import save_pretrained
    from r21d_zoo.infer.config import ModelSource
    from r21d_zoo.jobs.finetune import FinetuneConfig, finetune
    from r21d_zoo.train.optim import OptimConfig
    from util import learning_seed

    seed = learning_seed()
    root = tmp_path_factory.mktemp("motion")
    train, val = make_motion_dataset(root, videos_per_class=64, val_per_class=8, num_frames=8, size=32, seed=seed)
    cfg = FinetuneConfig(
        model=ModelSource("r2plus1d_18", pretrained=False, model_args=dict(channel_multiplier=0.25)),
        clip=MOTION_CLIP, flip=False, batch_size=8, workers=0, amp=None, num_clips=1, seed=seed,
        optim=OptimConfig(lr=0.02, reference_batch=8, epochs=5, warmup_epochs=1, schedule="cosine"),
    )  # 5 epochs: val top-1 1.0 at seeds 0 and 1
    result = finetune(read_labelled(train), read_labelled(val, classes=["left", "right"]), cfg, progress=False)
    assert result.history[-1]["val_video_top1"] >= 0.9
    save_pretrained(result.model, root / "model")
    return root / "model"
