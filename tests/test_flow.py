"""Optical flow as a modality: known motion recovered, the flow weight's normalisation, RAFT fetched like any weight,
and flow models read by every job (extract, evaluate, two-stream evaluate, save_pretrained / local-dir)."""

import dataclasses
import hashlib
import json
import types

import numpy as np
import pytest
import torch

import r21d_zoo
from r21d_zoo.cli import main as cli_main
from r21d_zoo.data.synthetic import make_motion_dataset
from r21d_zoo.models import FLOW_MEAN, FLOW_STD, ClipSpec, WeightsError, set_derived_cfg
from r21d_zoo.video import VideoClassificationTransform, flow as flow_mod, read_clip, train_augment
from util import TINY, loopback_server, make_video

pytest.importorskip("cv2")
FLOW_TAG = "r2plus1d_34.sports1m_ft_kinetics400_flow_32f"


def translating_texture(dx: int, dy: int, frames: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """(frames, size, size, 3) uint8: a smooth random texture moving (dx, dy) pixels per frame."""
    import cv2

    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.random((size * 3, size * 3)).astype(np.float32), (0, 0), 1.0)
    big = ((big - big.min()) / np.ptp(big) * 255).astype(np.uint8)
    o = size
    clip = [big[o - dy * t : o - dy * t + size, o - dx * t : o - dx * t + size] for t in range(frames)]
    return np.repeat(np.stack(clip)[..., None], 3, -1)


@pytest.mark.parametrize("dx, dy", [(2, 1), (-1, 2), (0, -3)])
def test_farneback_flow_of_a_known_translation_and_the_weights_normalisation(dx, dy):
    spec = ClipSpec(num_frames=4, resize_size=None, crop_size=48, modality="flow", mean=FLOW_MEAN, std=FLOW_STD)
    assert spec.frames_to_read() == (5, 1) and spec.in_chans == 2
    frames = torch.from_numpy(translating_texture(dx, dy, 5))
    x = VideoClassificationTransform.from_spec(spec)(frames)
    assert x.shape == (1, 2, 4, 48, 48)
    cropped = frames[:, 8:56, 8:56].numpy()  # the centre crop
    raw = torch.from_numpy(flow_mod.farneback_flow(cropped)).transpose(0, 1)[None]  # (1, 2, T, H, W) in pixels
    mean, std = torch.tensor(FLOW_MEAN).view(1, 2, 1, 1, 1), torch.tensor(FLOW_STD).view(1, 2, 1, 1, 1)
    torch.testing.assert_close(x, (raw - mean) / std)  # the model sees the weights' normalisation of the flow
    measured = raw.mean(dim=(0, 2, 3, 4))
    for got, want in zip(measured.tolist(), (dx, dy)):
        assert abs(got - want) <= 0.1 * max(abs(dx), abs(dy)), (measured, (dx, dy))


def test_flow_positions_pair_consecutive_frames_at_the_clip_stride(monkeypatch):
    """Position l of a stride-s flow clip is the flow from frame l*s to frame l*s + 1 (caffe2's frame_gap_of=1)."""
    spec = ClipSpec(num_frames=3, sampling_stride=2, resize_size=None, crop_size=8, modality="flow", mean=(0, 0),
                    std=(1, 1))
    assert spec.frames_to_read() == (6, 1)
    # a stand-in method: dx = the first frame's value, dy = the difference to the next
    fake = lambda f: torch.stack([f[:-1, 0], f[1:, 0] - f[:-1, 0]], 1).float()  # noqa: E731
    monkeypatch.setitem(flow_mod.FLOW_FUNCTIONS, "farneback", fake)
    frames = (torch.arange(6) ** 2).view(6, 1, 1, 1).expand(6, 8, 8, 3).to(torch.uint8)
    x = VideoClassificationTransform.from_spec(spec)(frames)
    assert x[0, 0, :, 0, 0].tolist() == [0, 4, 16] and x[0, 1, :, 0, 0].tolist() == [1, 5, 9]
    with pytest.raises(ValueError, match="flow has 2 channels"):
        ClipSpec(modality="flow")  # the RGB mean/std


def test_raft_weights_are_fetched_hash_checked_and_give_flow_at_input_size(tmp_path, torch_home, monkeypatch):
    """torchvision's RAFT weights come through the package's downloader (here from a loopback server with a
    random-init state dict: no real weights offline, so this checks the plumbing, not RAFT's accuracy)."""
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    served = tmp_path / "served"
    served.mkdir()
    torch.save(raft_small(weights=None).state_dict(), served / "raw.pth")
    sha = hashlib.sha256((served / "raw.pth").read_bytes()).hexdigest()
    (served / "raw.pth").rename(served / f"raft_small_C_T_V2-{sha[:8]}.pth")
    (served / "raft_small_C_T_V2-00000000.pth").write_bytes((served / f"raft_small_C_T_V2-{sha[:8]}.pth").read_bytes())
    flow_mod.raft_model.cache_clear()
    with loopback_server(served) as base:
        monkeypatch.setattr(
            flow_mod, "_raft_weights", lambda m: types.SimpleNamespace(url=f"{base}/raft_small_C_T_V2-00000000.pth")
        )
        with pytest.raises(WeightsError, match="offline mode"):  # the tests' default: HF_HUB_OFFLINE=1
            flow_mod.raft_model("raft_small", "cpu")
        monkeypatch.delenv("HF_HUB_OFFLINE")
        with pytest.raises(WeightsError, match="hash mismatch"):
            flow_mod.raft_model("raft_small", "cpu")
        assert not list(torch_home.rglob("*.pth"))
        monkeypatch.setattr(
            flow_mod, "_raft_weights", lambda m: types.SimpleNamespace(url=f"{base}/raft_small_C_T_V2-{sha[:8]}.pth")
        )
        frames = torch.from_numpy(translating_texture(1, 0, 3, size=44)).permute(0, 3, 1, 2)[:, :, :36]
        out = flow_mod.clip_flow(frames[None], 2, 1, "raft_small")
    flow_mod.raft_model.cache_clear()
    assert out.shape == (1, 2, 2, 36, 44) and torch.isfinite(out).all()  # padded to /8 for RAFT, cut back
    assert [p.name for p in torch_home.rglob("*.pth")] == [f"raft_small_C_T_V2-{sha[:8]}.pth"]


@pytest.fixture(scope="module")
def clip_video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("flowvid") / "v.mp4", num_frames=14, size=(64, 96), fps=10)


def test_flow_tag_extracts_what_flow_by_hand_gives(clip_video):
    torch.manual_seed(0)
    model = r21d_zoo.create_model(FLOW_TAG, pretrained=False, **TINY).eval()
    assert ClipSpec.from_model(model).modality == "flow" and model.stem[0].in_channels == 2
    result = r21d_zoo.extract_features(model, clip_video, num_frames=4, num_clips=1)
    spec = ClipSpec.from_model(model, num_frames=4)
    frames = read_clip(clip_video, float(result.clip_times[0, 0]), spec=spec).frames  # 5 frames: 4 flow positions
    assert len(frames) == 5
    with torch.no_grad():
        x = r21d_zoo.create_transform(spec)(frames)
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
    np.testing.assert_allclose(result.features, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_flow_tag_runs_in_extract_and_evaluate_with_no_flow_flags(clip_video, tmp_path):
    args = ["--model", FLOW_TAG, "--random-weights", "--model-args", json.dumps(TINY), "--num-frames", "4"]
    out = tmp_path / "features"
    assert cli_main(["extract", str(clip_video), *args, "-o", str(out), "--workers", "0"]) == 0
    features = np.load(out / "v.npy")
    assert features.ndim == 2 and np.isfinite(features).all()
    recorded = (out / "extraction.json").read_text()
    assert recorded.count('"modality": "flow"') == 1 and '"flow_method": "farneback"' in recorded
    (tmp_path / "val.csv").write_text(f"path,label\n{clip_video},3\n")
    results = tmp_path / "results.json"
    assert cli_main(["evaluate", "--data", str(tmp_path / "val.csv"), *args, "--num-clips", "2", "--workers", "0",
                     "--output", str(results)]) == 0  # fmt: skip
    assert json.loads(results.read_text())["clips"] == 2


def _tiny_model(modality: str, classes, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    flow = modality == "flow"
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=len(classes), in_chans=2 if flow else 3, **TINY)
    clip = dict(num_frames=4, resize_size=None, crop_size=32)
    if flow:
        clip.update(modality="flow", mean=FLOW_MEAN, std=FLOW_STD)
    set_derived_cfg(model, base_model=None, clip=ClipSpec(**clip), labels=tuple(classes), in_chans=2 if flow else 3)
    return model.eval()


def test_flow_model_saved_and_reloaded_keeps_its_modality(tmp_path):
    model = _tiny_model("flow", ["left", "right"], 0)
    r21d_zoo.save_pretrained(model, tmp_path / "flow")
    config = json.loads((tmp_path / "flow" / "config.json").read_text())
    assert json.dumps(config).count('"modality": "flow"') == 1
    loaded = r21d_zoo.create_model(f"local-dir:{tmp_path / 'flow'}").eval()
    assert ClipSpec.from_model(loaded) == ClipSpec.from_model(model)
    transform = r21d_zoo.create_transform(loaded)
    assert transform.modality == "flow" and transform.in_chans == 3  # RGB frames in, flow out
    frames = torch.from_numpy(translating_texture(1, 1, 5, size=32))
    with torch.no_grad():
        torch.testing.assert_close(loaded(transform(frames)), model(transform(frames)))


@pytest.mark.video
def test_two_stream_evaluate_reports_the_fusion_of_both_streams(tmp_path):
    """On the synthetic motion task: the fused scores are the weighted mean of each stream's, video by video, and
    the fused accuracy is reported beside both streams' (untrained models: the check is of the arithmetic)."""
    _, val = make_motion_dataset(tmp_path / "motion", 0, 3, num_frames=8, size=32)
    for name, modality, seed in (("rgb", "rgb", 1), ("flow", "flow", 2)):
        r21d_zoo.save_pretrained(_tiny_model(modality, ["left", "right"], seed), tmp_path / name)
    common = ["--data", str(val), "--num-clips", "2", "--workers", "0", "--label-format", "csv"]
    scores = {}
    for name, extra in (("rgb", []), ("flow", []), ("fused", ["--flow-model", f"local-dir:{tmp_path / 'flow'}",
                                                              "--flow-weight", "0.25"])):  # fmt: skip
        model = "flow" if name == "flow" else "rgb"
        path = tmp_path / f"{name}.jsonl"
        assert cli_main(["evaluate", *common, "--model", f"local-dir:{tmp_path / model}", *extra,
                         "--save-scores", str(path), "--output", str(tmp_path / f"{name}.json")]) == 0  # fmt: skip
        scores[name] = np.array([json.loads(line)["scores"] for line in path.read_text().splitlines()])
    assert scores["rgb"].shape == (6, 2)
    np.testing.assert_allclose(scores["fused"], 0.75 * scores["rgb"] + 0.25 * scores["flow"], atol=2e-6)
    fused = json.loads((tmp_path / "fused.json").read_text())
    assert fused["flow_weight"] == 0.25 and fused["videos"] == 6
    for name in ("rgb", "flow"):
        alone = json.loads((tmp_path / f"{name}.json").read_text())
        assert fused["streams"][name]["video_top1"] == alone["video_top1"]
    top1 = np.mean(scores["fused"].argmax(1) == np.array([0] * 3 + [1] * 3))
    assert fused["video_top1"] == pytest.approx(top1)
    rgb = ["--model", f"local-dir:{tmp_path / 'rgb'}"]
    assert cli_main(["evaluate", *common, *rgb, "--flow-model", rgb[1]]) == 2  # the flow stream must be a flow model


@pytest.mark.video
def test_finetuning_the_flow_tag_trains_on_flow_and_exports_a_flow_model(tmp_path):
    """Training clips are cropped, then turned into flow (train_augment: the eval transform's flow when the crop is
    the whole frame); the exported model is a flow model that evaluate reads back with the same numbers."""
    from r21d_zoo.data.labelled import read_labelled
    from r21d_zoo.infer.config import ModelSource
    from r21d_zoo.infer.scores import evaluate
    from r21d_zoo.jobs.finetune import FinetuneConfig, finetune
    from r21d_zoo.train.optim import OptimConfig

    train_csv, val_csv = make_motion_dataset(tmp_path / "m", videos_per_class=8, val_per_class=4, num_frames=8,
                                             size=32)  # fmt: skip
    train, val = read_labelled(train_csv), read_labelled(val_csv, classes=["left", "right"])
    r21d_zoo.save_pretrained(_tiny_model("flow", ["left", "right"], 0), tmp_path / "start")
    cfg = FinetuneConfig(
        model=ModelSource(f"local-dir:{tmp_path / 'start'}"), clip=dict(num_frames=4, resize_size=(32, 32),
        crop_size=28), flip=False, batch_size=8, workers=0, amp=None, num_clips=1, seed=0,
        optim=OptimConfig(lr=0.05, reference_batch=8, epochs=2, warmup_epochs=1, schedule="cosine"),
    )  # fmt: skip
    spec = ClipSpec.from_model(r21d_zoo.create_model(f"local-dir:{tmp_path / 'start'}"), resize_size=None)
    clips = torch.from_numpy(np.stack([translating_texture(2, -1, 5, size=32, seed=s) for s in range(2)]))
    torch.testing.assert_close(
        train_augment(clips, spec, False, torch.Generator()), VideoClassificationTransform.from_spec(spec)(clips)
    )
    result = finetune(train, val, cfg, out_dir=tmp_path / "run", progress=False)
    assert all(np.isfinite(h["train_loss"]) for h in result.history)
    best = r21d_zoo.create_model(f"local-dir:{result.best_dir}").eval()
    spec = ClipSpec.from_model(best)
    assert (spec.modality, spec.num_frames, spec.mean) == ("flow", 4, FLOW_MEAN)
    again = evaluate(best, val, dataclasses.replace(spec, crop_mode="center"), 1)
    best_epoch = max(result.history, key=lambda h: h["val_video_top1"])
    assert again["video_top1"] == best_epoch["val_video_top1"]
