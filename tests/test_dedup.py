"""De-duplication of pre-training videos against target videos, over features from `r21d-zoo extract`."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import r21d_zoo
from r21d_zoo.cli import main
from r21d_zoo._errors import InputError
from r21d_zoo.jobs.dedup import Descriptors, find_duplicates
from r21d_zoo.data.inputs import discover_videos
from r21d_zoo.infer.config import ExtractConfig
from r21d_zoo.infer.extraction import run_extraction
from r21d_zoo.data.shards import ShardStream, open_shards
from r21d_zoo.video.writer import write_video

from util import COLOURS, colour_frames, make_frames_video


@pytest.mark.video
def test_planted_near_duplicates_are_all_found_and_distinct_videos_are_not(tmp_path):
    rng = np.random.default_rng(0)
    colours = list(COLOURS)
    target, pretrain = tmp_path / "target", tmp_path / "pretrain"
    target.mkdir(), pretrain.mkdir()
    frames = {}
    for i in range(16):  # 8 target and 8 distinct pre-training videos, colours shared between the sets
        frames[i] = colour_frames(colours[i % len(colours)], 40, 96, rng)
        make_frames_video((target if i < 8 else pretrain) / f"v{i}.mp4", frames[i])
    write_video(pretrain / "reencoded.mp4", iter(frames[0]), 10, options={"crf": "35"})  # lossy re-encode
    small = F.interpolate(torch.from_numpy(frames[1]).permute(0, 3, 1, 2).float(), size=(64, 64), mode="bilinear")
    write_video(pretrain / "resized.mp4", iter(small.permute(0, 2, 3, 1).round().byte().numpy()), 10)
    write_video(pretrain / "trimmed.mp4", iter(frames[2][8:32]), 10)  # 2.4 s of the 4 s original
    planted = {"reencoded": "v0", "resized": "v1", "trimmed": "v2"}
    rows = ["path,label"] + [f"{p},{'dup' if p.stem in planted else 'other'}" for p in sorted(pretrain.glob("*.mp4"))]
    (tmp_path / "pretrain.csv").write_text("\n".join(rows) + "\n")
    assert main(["shards", "pack", str(tmp_path / "pretrain.csv"), "-o", str(tmp_path / "shards")]) == 0

    torch.manual_seed(0)
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=0, channel_multiplier=0.25).eval()
    clip = dict(num_frames=8, resize_size=(64, 85), crop_size=64)
    cfg = ExtractConfig(clip=clip, num_clips=4, layer="layer2", spatial_pool="none")  # layout-aware descriptors
    for name, source in (("pre", tmp_path / "pretrain.csv"), ("tgt", target)):
        summary = run_extraction(discover_videos([source]), tmp_path / name, model, cfg, progress=False)
        assert summary.failed == 0

    out = tmp_path / "exclude.txt"
    args = ["dedup", "--pretrain", str(tmp_path / "pre"), "--target", str(tmp_path / "tgt"), "-o", str(out)]
    assert main(args + ["--threshold", "0.8", "--shards", str(tmp_path / "shards")]) == 0
    report = json.loads(Path(f"{out}.json").read_text())
    assert {p["pretrain"]: p["target"] for p in report["pairs"]} == planted  # all found, no false positive
    assert report["removed"] == 3 and report["removed_per_label"] == {"dup": 3}
    excluded = set(out.read_text().split())
    # features extracted from the shards themselves are named by key; faiss's HNSW index finds the same pairs
    summary = run_extraction(open_shards(str(tmp_path / "shards")), tmp_path / "pre_keys", model, cfg, progress=False)
    assert summary.done == 11
    keyed = ["dedup", "--pretrain", str(tmp_path / "pre_keys"), "--target", str(tmp_path / "tgt")]
    keyed += ["-o", str(tmp_path / "keyed.txt"), "--shards", str(tmp_path / "shards"), "--index", "faiss"]
    assert main(keyed) == 0
    assert set((tmp_path / "keyed.txt").read_text().split()) == excluded
    # 4 x 4 cells of the same maps (512 numbers a video instead of 8192) separate them as well
    gridded = keyed[:-2] + ["-o", str(tmp_path / "grid.txt"), "--grid", "4"]
    assert main(gridded) == 0 and set((tmp_path / "grid.txt").read_text().split()) == excluded
    stream = ShardStream(open_shards(str(tmp_path / "shards")), exclude=excluded, decode=False)
    kept = {key for key, _ in stream}
    assert len(kept) == 8 and not kept & excluded and all(k.split("__")[-1] in planted for k in excluded)


def test_search_is_exact_in_chunks_and_checks_dimensions():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(50, 16, generator=g, dtype=torch.float64)
    pretrain = torch.cat([torch.randn(200, 16, generator=g, dtype=torch.float64), target[[3, 7]] * 1.01])
    for chunk, index in ((7, "exact"), (4096, "exact"), (64, "faiss")):
        found = find_duplicates(pretrain, target, threshold=0.99, chunk=chunk, index=index)
        assert [(i, j) for i, j, _ in found] == [(200, 3), (201, 7)]
    with pytest.raises(ValueError, match="16 dimensions, target features 8"):
        find_duplicates(pretrain, target[:, :8])


def test_folders_are_read_in_chunks_and_pooled_to_a_grid(tmp_path):
    """Pre-training descriptors stream from their files in chunks with the same result as in memory; --grid pools
    spatial maps; mismatched or unpoolable features are named."""
    g = torch.Generator().manual_seed(1)
    maps = torch.randn(30, 3, 8, 6, 6, generator=g)  # 30 videos of 3 clips, 8 x 6 x 6 maps
    maps[25:] = maps[[4, 9, 14, 19, 24]] + 0.05 * torch.randn(5, 3, 8, 6, 6, generator=g)  # 5 noisy copies
    (tmp_path / "pre").mkdir(), (tmp_path / "tgt").mkdir()
    for i, m in enumerate(maps):
        np.save(tmp_path / ("tgt" if i < 20 else "pre") / f"v{i:02d}.npy", m.numpy())
    for grid, cells in ((None, 36), (2, 4)):
        pre, tgt = Descriptors(str(tmp_path / "pre"), grid), Descriptors(str(tmp_path / "tgt"), grid)
        rows = pre.all()
        assert rows.shape == (10, 8 * cells) and rows.dtype == torch.float32
        pooled = F.adaptive_avg_pool2d(maps[20:].flatten(0, 1), grid) if grid else maps[20:]
        assert torch.allclose(rows, pooled.reshape(10, 3, -1).mean(1), atol=1e-6)
        in_memory = find_duplicates(rows, tgt.all(), threshold=0.9)
        streamed = find_duplicates(pre, tgt.all(), threshold=0.9, chunk=3)
        pairs = [(i, j) for i, j, _ in streamed]
        assert pairs == [(i, j) for i, j, _ in in_memory] == [(5, 4), (6, 9), (7, 14), (8, 19)]
        assert all(a[2] == pytest.approx(b[2], abs=1e-6) for a, b in zip(streamed, in_memory))
    np.save(tmp_path / "pre" / "odd.npy", np.zeros((3, 8, 5, 5), np.float32))
    with pytest.raises(InputError, match="different sizes: .*odd.npy gives 200 numbers, .*v20.npy 288"):
        Descriptors(str(tmp_path / "pre")).all()
    np.save(tmp_path / "pre" / "odd.npy", np.zeros((3, 8), np.float32))
    with pytest.raises(InputError, match="--grid pools spatial maps.*--spatial-pool none"):
        Descriptors(str(tmp_path / "pre"), grid=2).all()
    with pytest.raises(InputError, match="--grid 0: .*at least 1"):
        Descriptors(str(tmp_path / "pre"), grid=0)


def _square_video(background: np.ndarray, colour: str, y: int, x: int, dy: int, dx: int, frames: int = 40):
    video = np.repeat(background[None], frames, 0)
    side = background.shape[0] // 3
    for t in range(frames):
        yt, xt = np.clip([y + dy * t, x + dx * t], 0, background.shape[0] - side)
        video[t, yt : yt + side, xt : xt + side] = COLOURS[colour]
    return video


@pytest.mark.video
def test_a_mirrored_copy_is_found_through_the_mirrored_targets_and_a_same_background_video_is_not(tmp_path):
    rng = np.random.default_rng(0)
    backgrounds = [(100 + rng.integers(0, 40, (96, 96, 1))).repeat(3, 2).astype(np.uint8) for _ in range(4)]
    colours = list(COLOURS)
    target, pretrain = tmp_path / "target", tmp_path / "pretrain"
    target.mkdir(), pretrain.mkdir()
    original = _square_video(backgrounds[0], colours[0], 10, 10, 1, 2)
    make_frames_video(target / "t0.mp4", original)
    for i in (1, 2):
        make_frames_video(target / f"t{i}.mp4", _square_video(backgrounds[i], colours[i], 40, 20, -1, 1))
    make_frames_video(pretrain / "flipped.mp4", original[:, :, ::-1])
    # another object moving elsewhere over the very same static background: a different video
    make_frames_video(pretrain / "same_background.mp4", _square_video(backgrounds[0], colours[1], 50, 40, -1, -2))
    make_frames_video(pretrain / "other.mp4", _square_video(backgrounds[3], colours[3], 30, 50, 2, -1))

    torch.manual_seed(0)
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=0, channel_multiplier=0.25).eval()
    clip = dict(num_frames=8, resize_size=(64, 85), crop_size=64)
    for name, source, mirror in (("pre", pretrain, False), ("tgt", target, False), ("tgt_mirrored", target, True)):
        cfg = ExtractConfig(clip=clip, num_clips=4, layer="layer2", spatial_pool="none", mirror=mirror)
        assert run_extraction(discover_videos([source]), tmp_path / name, model, cfg, progress=False).failed == 0
    assert json.loads((tmp_path / "tgt_mirrored" / "extraction.json").read_text())["mirror"] is True

    out = tmp_path / "exclude.txt"
    args = ["dedup", "--pretrain", str(tmp_path / "pre"), "--target", str(tmp_path / "tgt"), "-o", str(out)]
    assert main(args) == 0 and out.read_text() == ""  # plain features miss the flipped copy
    assert main(args + ["--mirrored-target", str(tmp_path / "tgt_mirrored")]) == 0
    report = json.loads(Path(f"{out}.json").read_text())
    assert [(p["pretrain"], p["target"]) for p in report["pairs"]] == [("flipped", "t0 (mirrored)")]
    assert report["pairs"][0]["cosine"] > 0.95 and report["target"] == 3
    assert out.read_text().split() == ["flipped"]
    # a folder that is not the targets' mirror extraction is refused, naming what differs
    assert main(args + ["--mirrored-target", str(tmp_path / "tgt")]) == 3
