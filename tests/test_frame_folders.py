"""Frame folders as videos (``--decoder frames``): the same clips, times and features as PyAV on the same video, found
as videos by every job, with the frame rate from the option or the dataset, and bad folders named."""

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from r21d_zoo import create_model, extract_features
from r21d_zoo.cli import main
from r21d_zoo.data.features import FeatureStore
from r21d_zoo.data.inputs import discover_videos
from r21d_zoo.data.labelled import read_labelled
from r21d_zoo.models import ClipSpec
from r21d_zoo.video import DecodeOptions, VideoDecodeError, open_video, write_video
from util import TINY, decode_index, make_video

pytestmark = pytest.mark.video

FPS = 25


def write_png(value: int, path: Path, size: tuple = (8, 8)) -> None:
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)


def smooth_texture(num_frames: int, h: int = 48, w: int = 64) -> list:
    """A blurred random texture moving 2 px per frame (natural-image-like, so JPEG error is as in real frames)."""
    rng = np.random.default_rng(0)
    base = torch.from_numpy(rng.integers(0, 256, (3, h, w + 2 * num_frames))).float()[None]
    base = torch.nn.functional.avg_pool2d(base, 5, 1, 2)[0].to(torch.uint8).permute(1, 2, 0).numpy()
    return [np.ascontiguousarray(base[:, 2 * i : 2 * i + w]) for i in range(num_frames)]


def dump_frames(source: Path, folder: Path, ext: str = "jpg", template: str = "img_{:05d}") -> Path:
    """The video's decoded frames as images numbered from 1, as mmaction2's build_rawframes writes them."""
    folder.mkdir(parents=True)
    with av.open(str(source)) as container:
        for i, frame in enumerate(container.decode(video=0), 1):
            path = folder / f"{template.format(i)}.{ext}"
            frame.to_image().save(path, **(dict(quality=95) if ext == "jpg" else {}))
    return folder


@pytest.fixture(scope="module")
def written_both_ways(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    write_video(root / "v.mp4", smooth_texture(40), fps=FPS)
    return root / "v.mp4", dump_frames(root / "v.mp4", root / "jpg"), dump_frames(root / "v.mp4", root / "png", "png")


SPECS = [
    ClipSpec(num_frames=8, resize_size=(40, 52)),  # consecutive native frames, resized
    ClipSpec(num_frames=6, frame_rate=10.0, sampling_stride=2, resize_size=None),  # resampled to another rate
]


@pytest.mark.parametrize("spec", SPECS, ids=["native", "resampled"])
@pytest.mark.parametrize("pad", ["repeat", "loop"])
def test_frame_folder_clips_equal_pyav_clips(written_both_ways, spec, pad):
    video, jpg, png = written_both_ways
    with (
        open_video(video, spec) as a,
        open_video(png, spec, frames_fps=FPS) as b,
        open_video(jpg, spec, "frames", frames_fps=FPS) as c,
    ):
        assert (b.info.duration, b.info.fps, b.info.width, b.info.height) == (
            a.info.duration,
            a.info.fps,
            a.info.width,
            a.info.height,
        )
        for start in (0.0, 0.52, 1.45):  # the last runs past the end: padded
            x, y, z = (r.read_spec_clip(start, spec, pad) for r in (a, b, c))
            assert np.array_equal(x.times, y.times) and np.array_equal(x.times, z.times)  # exact
            assert x.num_padded == y.num_padded == z.num_padded
            assert torch.equal(x.frames, y.frames)  # lossless frames: the very same pixels
            error = (x.frames.float() - z.frames.float()).abs()
            assert error.mean() < 3 and error.max() < 40  # JPEG at quality 95
        assert x.num_padded > 0


def test_frame_folder_features_equal_pyav_features(written_both_ways):
    video, jpg, png = written_both_ways
    model = create_model("r2plus1d_18", pretrained=False, **TINY).eval()
    clip = dict(num_frames=4, resize_size=(40, 52), crop_size=32)
    ref = extract_features(model, video, stride_sec=0.4, **clip)
    decode = DecodeOptions(frames_fps=FPS)
    lossless, jpeg = (extract_features(model, f, stride_sec=0.4, decode=decode, **clip) for f in (png, jpg))
    for got in (lossless, jpeg):
        assert np.array_equal(got.clip_times, ref.clip_times) and got.features.shape == ref.features.shape
    assert np.abs(lossless.features - ref.features).max() <= 1e-3 * np.abs(ref.features).max()
    # JPEG's own loss, whichever reader decodes it (measured: cosine 0.989-0.991 for this texture and random model)
    cosine = (jpeg.features * ref.features).sum(1) / np.linalg.norm(jpeg.features, axis=1)
    assert (cosine / np.linalg.norm(ref.features, axis=1)).min() > 0.98


def test_frame_rate_comes_from_the_option_and_numbering_gaps_hold_the_last_frame(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    for n in (1, 2, 3, 5, 6):  # frame 4 is missing
        write_png(n * 40, folder / f"frame_{n:010d}.png")
    (folder / "flow_x_00001.jpg").write_bytes(b"flow images beside the frames are not frames")
    (folder / "notes.txt").write_text("other files are ignored")
    with open_video(folder, frames_fps=10) as r:
        assert r.info.duration == pytest.approx(0.6) and r.info.fps == 10
        clip = r.read_clip(0.0, 6, frame_rate=10)
        assert clip.frames[:, 0, 0, 0].tolist() == [40, 80, 120, 120, 200, 240] and clip.num_padded == 0
    with open_video(folder) as r:
        assert r.info.fps == 30  # the default, when neither the option nor the dataset says


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda f: None, "no frame images"),
        (lambda f: (f / "img_00001.jpg").write_bytes(b"not a jpeg"), "img_00001.jpg: cannot decode this frame"),
        (
            lambda f: [
                write_png(0, f / "img_00001.png"),
                write_png(0, f / "img_00002.png", (8, 10)),
            ],
            "img_00002.png: 10x8 frame in a 8x8 video",
        ),
        (
            lambda f: [write_png(0, f / n) for n in ("a1.png", "b2.png")],
            "several name patterns",
        ),
    ],
    ids=["empty", "corrupt", "sizes", "patterns"],
)
def test_a_bad_frame_folder_is_a_decode_error_naming_it(tmp_path, make, message):
    folder = tmp_path / "v"
    folder.mkdir()
    make(folder)
    with pytest.raises(VideoDecodeError, match=message):
        with open_video(folder) as r:
            r.read_clip(0.0, 2)


@pytest.fixture()
def rawframes(tmp_path):
    """mmaction2's rawframes layout, <class>/<video>/img_00001.jpg, of videos whose frames show their index."""
    root = tmp_path / "rawframes"
    for cls in ("jump", "run"):
        for i in range(2):
            video = make_video(tmp_path / f"{cls}{i}.mp4", num_frames=20, size=(32, 40), fps=10)
            dump_frames(video, root / cls / f"{cls}_{i}")
    return root


def test_extract_finds_frame_folders_records_the_rate_and_resumes(rawframes, tmp_path, capsys):
    assert [v.name for v in discover_videos([rawframes], frame_folders=True)] == [
        "jump/jump_0",
        "jump/jump_1",
        "run/run_0",
        "run/run_1",
    ]
    out = tmp_path / "feats"
    argv = ["extract", str(rawframes), "-o", str(out), "--model", "r2plus1d_18", "--random-weights"]
    argv += ["--model-args", json.dumps(TINY), "--num-frames", "4", "--resize", "32", "32", "--crop-size", "28"]
    argv += ["--workers", "0", "--stride-sec", "0.5"]
    assert main([*argv, "--decoder", "pyav"]) == 3
    assert "need --decoder frames" in capsys.readouterr().err
    assert main([*argv, "--decoder", "frames", "--frames-fps", "10"]) == 0
    store = FeatureStore(out)
    assert sorted(store.names) == ["jump/jump_0", "jump/jump_1", "run/run_0", "run/run_1"]
    times = store.read("run/run_1").clip_times
    assert times[:, 0].tolist() == [0.0, 0.5, 1.0, 1.5]  # 20 frames at 10 fps: 2 s
    assert json.loads((out / "extraction.json").read_text())["frames_fps"] == 10
    assert main([*argv, "--decoder", "frames", "--frames-fps", "10"]) == 0
    assert "4 already done" in capsys.readouterr().out
    assert main([*argv, "--decoder", "frames", "--frames-fps", "25"]) == 3  # other times: refused
    assert "frames_fps: 10.0 -> 25.0" in capsys.readouterr().err


def test_finetune_and_evaluate_read_frame_folders_at_the_datasets_rate(rawframes, tmp_path):
    data = read_labelled(rawframes)
    assert data.classes == ["jump", "run"] and len(data) == 4 and Path(data.samples[0].path).is_dir()
    run = tmp_path / "run"
    argv = ["finetune", "--train", str(rawframes), "--val", str(rawframes), "-o", str(run), "--frames-fps", "10"]
    argv += ["--model", "r2plus1d_18", "--random-weights", "--model-args", json.dumps(TINY), "--epochs", "1"]
    argv += ["--batch-size", "2", "--num-frames", "4", "--resize", "32", "32", "--crop-size", "28", "--workers", "0"]
    assert main(argv) == 0
    out = tmp_path / "eval.json"
    argv = ["evaluate", "--data", str(rawframes), "--model", f"local-dir:{run / 'final'}", "--num-clips", "2"]
    assert main([*argv, "--frames-fps", "10", "--output", str(out), "--workers", "0"]) == 0
    assert json.loads(out.read_text())["videos"] == 4
    list_file = tmp_path / "trainlist01.txt"  # UCF101's list format: frame folders at UCF101's 25 fps
    list_file.write_text("".join(f"{cls}/{cls}_0 1\n" for cls in ("jump", "run")))
    ucf = read_labelled(list_file, video_root=str(rawframes))
    assert [ucf.fps_of(s) for s in ucf.samples] == [25.0, 25.0]
    assert read_labelled(list_file, video_root=str(rawframes), frames_fps=10).fps_of(ucf.samples[0]) == 10


def test_epic_frame_folders_take_each_videos_extraction_rate(tmp_path):
    header = ["narration_id", "participant_id", "video_id", "start_timestamp", "stop_timestamp", "verb", "verb_class"]
    rows = [["P01_11_0", "P01", "P01_11", "00:00:00.10", "00:00:01.00", "take", "0"]]
    rows += [["P01_101_0", "P01", "P01_101", "00:00:00.10", "00:00:01.00", "put", "1"]]
    for video_id in ("P01_11", "P01_101"):
        folder = tmp_path / "P01" / "rgb_frames" / video_id
        folder.mkdir(parents=True)
        write_png(0, folder / "frame_0000000001.png")
    csv_path = tmp_path / "EPIC_100_train.csv"
    csv_path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    data = read_labelled(csv_path)
    assert [(Path(s.path).name, data.fps_of(s)) for s in data.samples] == [("P01_11", 60.0), ("P01_101", 50.0)]


def test_check_videos_and_pack_on_frame_folders(rawframes, tmp_path, capsys):
    bad = rawframes / "run" / "run_broken"
    bad.mkdir()
    (bad / "img_00001.jpg").write_bytes(b"truncated")
    out = tmp_path / "check"
    assert main(["check-videos", str(rawframes), "-o", str(out), "--decoder", "frames", "--frames-fps", "10"]) == 1
    report = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    ok = [r for r in report if r["ok"]]
    assert len(ok) == 4 and all(r["frames"] == 20 and r["fps"] == 10 and r["duration"] == 2.0 for r in ok)
    assert (out / "bad.txt").read_text().split() == [str(bad)]
    assert main(["shards", "pack", str(rawframes), "-o", str(tmp_path / "shards")]) == 3
    assert "are frame folders" in capsys.readouterr().err


def test_frames_of_a_folder_show_the_right_index(rawframes):
    with open_video(rawframes / "jump" / "jump_0", frames_fps=10) as r:
        clip = r.read_clip(0.75, 4, frame_rate=5)
    assert [decode_index(f) for f in clip.frames.numpy()] == [7, 9, 11, 13]
