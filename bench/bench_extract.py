"""Decoding and extraction benchmark, all measured in one run on videos this script writes with PyAV:

1. a 16-frame clip late in a long video: seek to the preceding keyframe vs decode from the start;
2. end-to-end extraction throughput (``run_extraction``, decoding workers) vs model-only throughput on the same clips;
   then torchcodec against PyAV, decode-only and end-to-end (time ratio: below 1 means torchcodec is faster);
3. peak resident memory (process + DataLoader workers) while extracting a long 720p video; and of ``r21d-zoo demo
   --video`` on the 60 s video, which decodes only the clip it uses.

    python bench/bench_extract.py                 # the full run (a 10-minute 720p video; ~5 min on 2 cores)
    python bench/bench_extract.py --minutes 1     # quicker
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakRSS, interleaved_medians, print_table, write_json  # noqa: E402

import r21d_zoo  # noqa: E402
from r21d_zoo.infer.config import ModelSource  # noqa: E402
from r21d_zoo.jobs.demo import run_demo  # noqa: E402
from r21d_zoo.data.inputs import VideoItem  # noqa: E402
from r21d_zoo.infer.config import ExtractConfig  # noqa: E402
from r21d_zoo.infer.extraction import run_extraction  # noqa: E402
from r21d_zoo.infer.features import ClipChunks, FeatureRunner  # noqa: E402
from r21d_zoo.models import ClipSpec  # noqa: E402
from r21d_zoo.video import DecodeOptions, open_video, write_video  # noqa: E402


def long_video(path: Path, seconds: float, size=(360, 640), fps: int = 30, gop: int = 60) -> Path:
    """A gradient with a moving square (cheap to encode), libx264 ultrafast, keyframe every ``gop`` frames."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    cycle = []
    for i in range(30):
        f = np.stack([(xx + 8 * i) % 256, yy * 255 // h, np.full_like(xx, 96)], -1).astype(np.uint8)
        f[h // 2 - h // 12 : h // 2 + h // 12, (w // 40) * i : (w // 40) * i + w // 10] = (230, 40, 40)
        cycle.append(f)
    frames = (cycle[i % 30] for i in range(int(seconds * fps)))
    write_video(path, frames, fps, options={"preset": "ultrafast"}, gop=gop)
    return path


def decode_from_start(path: Path, t: float, n: int) -> np.ndarray:
    """The naive reader: decode every frame from the beginning until ``n`` frames at or after ``t``."""
    out = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            if frame.time >= t - 1e-6:
                out.append(frame.to_ndarray(format="rgb24"))
                if len(out) == n:
                    break
    return np.stack(out)


def seek_read(path: Path, t: float, n: int) -> np.ndarray:
    with open_video(path) as r:
        return r.read_clip(t, n).frames.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the 720p memory-test video")
    parser.add_argument("--model", default="r2plus1d_18.tv_kinetics400_16f", help="weights config to extract with")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default="bench/results/extract.json")
    args = parser.parse_args()
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # 1. seek vs decode from the start ---------------------------------------------------------------------------
        long = long_video(tmp / "long.mp4", 60)
        assert np.array_equal(seek_read(long, 50.0, 16), decode_from_start(long, 50.0, 16))  # same frames
        times = interleaved_medians(
            dict(seek=lambda: seek_read(long, 50.0, 16), linear=lambda: decode_from_start(long, 50.0, 16)), repeats=5
        )
        results["clip_at_50s_of_60s_640x360"] = dict(
            seek_ms=times["seek"] * 1e3, decode_from_start_ms=times["linear"] * 1e3
        )
        rows.append(
            dict(
                measurement="16 frames at t=50 s of a 60 s 640x360 30 fps video",
                ours=f"seek {times['seek'] * 1e3:.1f} ms",
                baseline=f"decode from start {times['linear'] * 1e3:.1f} ms",
                ratio=f"{times['seek'] / times['linear']:.3f}",
            )
        )
        # 1b. demo --video reads only the clip it needs ----------------------------------------------------------------
        with PeakRSS() as rss:
            run_demo(ModelSource(args.model, pretrained=False), video=str(long), repeats=1)
        whole = 60 * 30 * 360 * 640 * 3 / 2**20
        results["demo_video_peak_rss"] = dict(peak_rss_mb=rss.peak / 2**20, whole_video_uint8_mb=whole)
        rows.append(
            dict(
                measurement="r21d-zoo demo --video on the 60 s 640x360 video (peak RSS, torch import included)",
                ours=f"{rss.peak / 2**20:.0f} MB",
                baseline=f"whole video as uint8: {whole:.0f} MB",
                ratio=f"{rss.peak / 2**20 / whole:.3f}",
            )
        )
        # 2. end-to-end vs model-only --------------------------------------------------------------------------------
        torch.manual_seed(0)
        model = r21d_zoo.create_model(args.model, pretrained=False).eval()
        model = model.cuda() if torch.cuda.is_available() else model  # on a GPU: the model there, NVDEC beside it
        cfg = ExtractConfig(batch_size=8)
        spec = ClipSpec.from_model(model)
        clip_video = long_video(tmp / "e2e.mp4", 20)
        item = VideoItem(str(clip_video), "e2e")
        chunks = [c for c in ClipChunks([], spec, cfg).chunks(item.path, item) if len(c["frames"])]
        num_clips = sum(len(c["frames"]) for c in chunks)
        runner = FeatureRunner(model, spec, cfg)
        t_model = interleaved_medians(dict(m=lambda: [runner(c["frames"]) for c in chunks]), repeats=3)["m"]
        out = tmp / "feats"

        def e2e():
            run_extraction(
                [VideoItem(str(clip_video), "e2e")], out, model, cfg, workers=args.workers, resume=False, progress=False
            )

        t_e2e = interleaved_medians(dict(e=e2e), repeats=3)["e"]
        results["e2e_vs_model_only"] = dict(
            clips=num_clips, e2e_clips_per_s=num_clips / t_e2e, model_only_clips_per_s=num_clips / t_model
        )
        rows.append(
            dict(
                measurement=f"{args.model} on a 20 s 640x360 video ({num_clips} clips, {args.workers} workers)",
                ours=f"end-to-end {num_clips / t_e2e:.2f} clips/s",
                baseline=f"model only {num_clips / t_model:.2f} clips/s",
                ratio=f"{t_model / t_e2e:.3f}",
            )
        )
        # 2b. torchcodec vs PyAV (same clips, same features) --------------------------------------------------------
        rows += torchcodec_rows(results, clip_video, spec, cfg, model, tmp, args.workers)
        # 3. peak memory on a long 720p video -------------------------------------------------------------------------
        t = time.perf_counter()
        big = long_video(tmp / "720p.mp4", args.minutes * 60, size=(720, 1280))
        print(f"wrote a {args.minutes:g}-minute 720p video in {time.perf_counter() - t:.0f} s")
        small = r21d_zoo.create_model(args.model.split(".")[0], channel_multiplier=0.25, **cfg_args(model))
        small.pretrained_cfg = model.pretrained_cfg
        with PeakRSS() as rss:
            t = time.perf_counter()
            summary = run_extraction(
                [VideoItem(str(big), "big")], out, small, cfg, workers=args.workers, resume=False, progress=False
            )
            seconds = time.perf_counter() - t
        assert summary.done == 1, summary
        feats = np.load(out / "big.npy")
        results["peak_rss_720p"] = dict(
            minutes=args.minutes,
            clips=len(feats),
            seconds=seconds,
            peak_rss_mb=rss.peak / 2**20,
            whole_video_uint8_mb=args.minutes * 60 * 30 * 720 * 1280 * 3 / 2**20,
        )
        rows.append(
            dict(
                measurement=f"peak RSS extracting a {args.minutes:g}-min 720p 30 fps video ({len(feats)} clips, "
                f"{args.workers} workers, {seconds:.0f} s)",
                ours=f"{rss.peak / 2**20:.0f} MB",
                baseline=f"whole video as uint8: {results['peak_rss_720p']['whole_video_uint8_mb']:.0f} MB",
                ratio=f"{rss.peak / 2**20 / results['peak_rss_720p']['whole_video_uint8_mb']:.4f}",
            )
        )
    print()
    table = print_table(rows, ["measurement", "ours", "baseline", "ratio"])
    write_json(args.json, dict(results=results, table=table))
    assert results["peak_rss_720p"]["peak_rss_mb"] < 2048, "peak RSS over 2 GB"


def torchcodec_rows(results: dict, video: Path, spec: ClipSpec, cfg: ExtractConfig, model, tmp: Path, workers: int):
    from r21d_zoo.video import DecoderUnavailableError, check_decoder

    try:
        check_decoder("torchcodec")
    except DecoderUnavailableError as e:
        print(f"torchcodec rows skipped: {e}")
        return [dict(measurement="torchcodec vs PyAV", ours="torchcodec not usable", baseline="-", ratio="-")]

    def decode(backend: str):
        item = VideoItem(str(video), "e2e")
        return [c["frames"] for c in ClipChunks([], spec, cfg, DecodeOptions(backend)).chunks(item.path, item)]

    same = all(torch.equal(a, b) for a, b in zip(decode("torchcodec"), decode("pyav")))
    t = interleaved_medians(dict(tc=lambda: decode("torchcodec"), av=lambda: decode("pyav")), repeats=3)

    def e2e(backend: str):
        item = [VideoItem(str(video), "e2e")]
        decode = DecodeOptions(backend)
        run_extraction(item, tmp / backend, model, cfg, decode=decode, workers=workers, resume=False, progress=False)

    te = interleaved_medians(dict(tc=lambda: e2e("torchcodec"), av=lambda: e2e("pyav")), repeats=3)
    feats = [np.load(tmp / b / "e2e.npy") for b in ("torchcodec", "pyav")]
    max_diff = float(np.abs(feats[0] - feats[1]).max())
    results["torchcodec_vs_pyav"] = dict(
        decode_s=dict(torchcodec=t["tc"], pyav=t["av"]),
        e2e_s=dict(torchcodec=te["tc"], pyav=te["av"]),
        identical_frames=same,
        max_feature_diff=max_diff,
    )
    where = "CPU" if not torch.cuda.is_available() else "GPU model, NVDEC decoding"
    return [
        dict(
            measurement=f"decode all clips of the 20 s video, torchcodec vs PyAV (identical frames: {same})",
            ours=f"torchcodec {t['tc']:.2f} s",
            baseline=f"PyAV {t['av']:.2f} s",
            ratio=f"{t['tc'] / t['av']:.3f}",
        ),
        dict(
            measurement=f"end-to-end extraction, torchcodec vs PyAV ({where}; max feature diff {max_diff:.1e})",
            ours=f"torchcodec {te['tc']:.2f} s",
            baseline=f"PyAV {te['av']:.2f} s",
            ratio=f"{te['tc'] / te['av']:.3f}",
        ),
    ]


def cfg_args(model: torch.nn.Module) -> dict:
    """Architecture arguments of the weights (so the memory test runs the same block types, narrower)."""
    return dict(getattr(model, "_model_args", {}) or {})


if __name__ == "__main__":
    main()
