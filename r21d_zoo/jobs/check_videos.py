"""``r21d-zoo check-videos``: a pre-flight pass over a dataset's videos before any job spends time on them.

Every video is opened and decoded to its last frame (in parallel decoding processes): whether it decodes, its
duration, frame rate, size and decoded frame count, and for a labelled dataset (``--data``, any annotation format)
whether each segment lies inside its video. One JSON line per video goes to ``OUT/report.jsonl`` as it is checked (a
rerun checks only the videos not in it yet, or changed since: another size or time), the videos that do not decode to
``OUT/bad.txt`` (one path per line: ``--exclude`` of ``extract``, ``finetune``, ``evaluate`` and ``shards pack``
leaves them out), and the summary counts to ``OUT/summary.json``.
"""

import json
import logging
from collections import Counter
from typing import Any, Dict, List, Optional

from torch.utils.data import DataLoader, Dataset

from .._errors import EXIT_PARTIAL, InputError
from .._io import atomic_write, content_identity, writable_dir
from .._progress import progress
from ..data.inputs import discover_videos
from ..video import VideoDecodeError, open_video
from ..video.reader import DEFAULT_DECODER, FRAMES_DECODER
from .configs import CheckVideosConfig as CheckVideosConfig

_logger = logging.getLogger(__name__)
REPORT, BAD, SUMMARY = "report.jsonl", "bad.txt", "summary.json"
CHUNK = 256  # frames decoded per read while counting


def check_video(
    path: str,
    decoder: str = DEFAULT_DECODER,
    segments: Optional[List[List[float]]] = None,
    frames_fps: Optional[float] = None,
) -> Dict:
    """One video's record: ``ok`` (it opens and decodes to the end), ``error``, ``duration``, ``fps``, ``width``,
    ``height``, ``frames`` (decoded), and for ``segments`` (``[start, end]`` seconds; None for an open end) the ones
    that do not lie inside it. ``frames_fps``: the rate of a frame folder."""
    record: Dict[str, Any] = dict(path=path, ok=False, error=None, identity=content_identity(path))
    try:
        with open_video(path, decoder=decoder, frames_fps=frames_fps) as reader:
            info = reader.info
            record.update(duration=info.duration, fps=info.fps, width=info.width, height=info.height)
            frames, start = 0, 0.0
            while True:
                clip = reader.read_clip(start, CHUNK, None, 1, "repeat")
                real = CHUNK - clip.num_padded
                frames += real
                if clip.num_padded or not real:
                    break
                start = float(clip.times[real - 1]) + 0.5 / info.fps
        if not frames:
            raise VideoDecodeError(f"{path}: no frame decodes")
        record.update(ok=True, frames=frames)
    except (VideoDecodeError, OSError, ValueError, RuntimeError) as e:
        record["error"] = str(e).split("\n")[0]
    if segments and record["ok"]:
        end_slack = 1.0 / max(record["fps"], 1e-6)  # an annotation may end within a frame of the video's end
        outside = [
            [s, e]
            for s, e in segments
            if (s or 0.0) >= record["duration"] or (e is not None and e > record["duration"] + end_slack)
        ]
        record["segments_outside"] = outside
    return record


class _Videos(Dataset):
    def __init__(
        self,
        paths: List[str],
        decoder: str,
        segments: Dict[str, List[List[float]]],
        frames_fps: Dict[str, Optional[float]],
    ):
        self.paths, self.decoder, self.segments, self.frames_fps = paths, decoder, segments, frames_fps

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Dict:
        path = self.paths[i]
        return check_video(path, self.decoder, self.segments.get(path), self.frames_fps.get(path))


def run(cfg: CheckVideosConfig) -> int:
    """Exit 1 when a video does not decode (all are checked and recorded), 3 when there is nothing to check."""
    if bool(cfg.inputs) == bool(cfg.data):
        raise InputError("give the videos to check (files, folders, lists) or --data DATASET, one of the two")
    segments: Dict[str, List[List[float]]] = {}
    frames_fps: Dict[str, Optional[float]] = {}
    if cfg.data:
        data = cfg.labels.read(cfg.data, subset="all")  # every video a split file lists
        for s in data.samples:
            segments.setdefault(s.path, [])
            frames_fps[s.path] = data.fps_of(s)
            if s.segment:
                segments[s.path].append([s.start, s.end])
        paths = list(segments)
    else:
        found = discover_videos(cfg.inputs, cfg.extensions.split(","), frame_folders=cfg.decoder == FRAMES_DECODER)
        paths = [v.path for v in found]
        frames_fps = {p: cfg.labels.frames_fps for p in paths}
    if not paths:
        raise InputError(f"no videos found in {' '.join(cfg.inputs) or cfg.data}")
    out = writable_dir(cfg.out)
    report = out / REPORT
    done: Dict[str, Dict] = {}
    if report.exists():  # resume: what an earlier run checked stays checked
        for line in report.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                done[record["path"]] = record
            except (ValueError, KeyError):
                continue  # a line cut short by a kill
    changed = [p for p in paths if p in done and done[p].get("identity") != content_identity(p)]
    todo = [p for p in paths if p not in done or p in changed]
    if done:
        _logger.info(
            "%d of %d videos were checked by an earlier run; %d changed since and are checked again",
            len(paths) - len(todo), len(paths), len(changed),
        )
    loader = DataLoader(
        _Videos(todo, cfg.decoder, segments, frames_fps), batch_size=None, num_workers=min(cfg.workers, len(todo))
    )
    with open(report, "a", encoding="utf-8") as f:
        for record in progress(loader, total=len(todo), desc="check-videos", unit="video"):
            f.write(json.dumps(record) + "\n")
            f.flush()
            done[record["path"]] = record
    records = [done[p] for p in paths]
    bad = [r["path"] for r in records if not r["ok"]]
    outside = [r["path"] for r in records if r.get("segments_outside")]
    atomic_write(out / BAD, lambda f: f.write("".join(f"{p}\n" for p in bad).encode()))
    ok = [r for r in records if r["ok"]]
    summary = dict(
        videos=len(records),
        ok=len(ok),
        bad=len(bad),
        segments_outside=sum(len(r.get("segments_outside", [])) for r in records),
        videos_with_segments_outside=len(outside),
        hours=round(sum(r["duration"] for r in ok) / 3600, 3),
        frame_rates=dict(Counter(f"{r['fps']:g}" for r in ok).most_common(10)),
        sizes=dict(Counter(f"{r['width']}x{r['height']}" for r in ok).most_common(10)),
    )
    atomic_write(out / SUMMARY, lambda f: f.write((json.dumps(summary, indent=2) + "\n").encode()))
    print(
        f"{summary['ok']} of {summary['videos']} videos decode ({summary['hours']} h); {len(bad)} bad -> "
        f"{out / BAD} (pass it as --exclude); {summary['segments_outside']} segment(s) outside their video"
    )
    for path in bad[:10]:
        print(f"  bad: {path}: {done[path]['error']}")
    return EXIT_PARTIAL if bad else 0
