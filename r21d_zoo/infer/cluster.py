"""Extraction on a Ray cluster (``r21d-zoo extract --engine ray``, ``run_extraction(..., engine="ray")``): the same
videos, clips and features as in one process, as a streaming Ray Data pipeline of three stages.

1. **list**: this job's videos (or WebDataset shard URLs), after resume has taken out what is done, one row each;
2. **decode** (Ray tasks, one CPU each, on any node): :class:`~r21d_zoo.infer.features.ClipChunks` reads the video
   with the clip settings, decoder and sampling of the single-process path and yields its resized uint8 clips in
   chunks of ``batch_size``, one row a chunk (a bad video: one error row);
3. **model** (an autoscaling pool of actors: one GPU each where the cluster has GPUs, else CPU actors with their own
   threads): a :class:`~r21d_zoo.infer.features.FeatureRunner` per actor, with the runtime chosen as in one process;
4. the driver gathers each video's chunks (they come in any order) and writes them through the feature store into
   the folder the single-process path writes: same files, ``extraction.json`` and ``manifest.jsonl``.

Execution streams with Ray's backpressure (clips flow through the object store a chunk at a time, never a whole
dataset). Ray retries a decode task or restarts a model actor whose process or node died; a retried chunk may arrive
twice and is kept once, and only the driver writes, each file atomically, so nothing is lost, written twice or left
partial. The videos must be readable at the same path from every node (a shared filesystem or URLs); the output
folder only from the driver.
"""

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from .._errors import InputError
from ..data.features import FeatureStore
from ..data.inputs import VideoItem
from ..deploy.placement import INT8
from ..models import ClipSpec
from ..video.reader import DecodeOptions
from .config import ExtractConfig, InferenceOptions
from .features import ClipChunks, ExtractSummary, FeatureRunner, FolderWriter, JobPart, ShardClipChunks

_logger = logging.getLogger(__name__)

RAY_HINT = "pip install 'r21d-zoo[ray]'"


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or an :class:`InputError` naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise InputError(f"--engine ray needs Ray Data ({e}); install it: {RAY_HINT}") from e
    return ray


def check_ray_options(inference: InferenceOptions) -> None:
    """Refuse, before any work, what the Ray engine cannot do: Ray missing, or int8 (calibrated in one process)."""
    require_ray()
    if inference.amp == INT8:
        raise InputError("--amp int8 calibrates and checks the model in one process: extract with --engine local")


def extract_on_ray(
    part: JobPart,
    spec: ClipSpec,
    cfg: ExtractConfig,
    decode: DecodeOptions,
    inference: InferenceOptions,
    model: nn.Module,
    writer: FolderWriter,
    bar: Any,
    address: Optional[str] = None,
) -> ExtractSummary:
    """Run ``part`` through the pipeline of the module docstring on the cluster at ``address`` (joined, and left as
    it was) or, when Ray is not running in this process and no address is given, on one started here for the run."""
    ray = require_ray()
    with _connected(ray, address):
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the run's own progress says videos, clips/s and how busy each stage is
        ctx.execution_options.preserve_order = False
        if part.shard_urls is not None:  # the decode tasks cannot see the output folder: they get the finished names
            done = frozenset(n for n in FeatureStore(writer.out).names if part.done(n))
            rows = [dict(shards=json.dumps([url])) for url in part.shard_urls]
        else:
            done = frozenset()
            rows = [dict(video=json.dumps(asdict(v))) for v in part.videos]
        if not rows:
            bar.close()
            return writer.summary
        device, actor = _model_placement(ray, inference)
        model_ref = ray.put(model.cpu())  # owned by the driver, so a restarted actor still finds it
        ds = ray.data.from_items(rows).map_batches(
            _decode_rows,
            batch_size=1,
            fn_kwargs=dict(spec=spec, cfg=cfg, decode=decode, done=done),
            num_cpus=1,
            memory=_decode_memory(spec, cfg),
        )
        ds = ds.map_batches(
            _model_stage([model_ref], spec, cfg, device, inference, actor["threads"]),
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actor["pool"]),
            num_cpus=actor["num_cpus"],
            num_gpus=actor["num_gpus"],
        )
        _logger.info("Ray: decoding in tasks of 1 CPU, the model in up to %d actor(s) on %s (%s)", actor["pool"],
                     device, ", ".join(f"{k}={v}" for k, v in actor.items() if k != "pool"))  # fmt: skip
        return _Gather(writer, bar).run(ds.iter_rows())


@contextmanager
def _connected(ray: Any, address: Optional[str]) -> Iterator[None]:
    """Ray in this process: as it is when already running, else joined at ``address`` (or started) and left after."""
    if ray.is_initialized():
        if address:
            _logger.info("Ray is already running in this process: using its cluster, not --address %s", address)
        yield
        return
    ray.init(address=address, include_dashboard=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def _model_placement(ray: Any, inference: InferenceOptions) -> Tuple[str, Dict[str, Any]]:
    """Where the model actors run: one GPU each where the cluster has GPUs (unless the device is the CPU), else CPU
    actors of half a node's CPUs (at most 8 threads), as many as leave half the cluster's CPUs to decoding."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    node_cpus = max([int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")] or [1])
    wanted = torch.device(inference.device) if inference.device else None
    if wanted is not None and wanted.type == "cuda" and not gpus:
        raise InputError(f"--device {inference.device}: the Ray cluster has no GPUs ({resources}); give --device cpu")
    if gpus and (wanted is None or wanted.type == "cuda"):
        return "cuda", dict(pool=gpus, num_gpus=1, num_cpus=1, threads=1)
    threads = max(1, min(8, node_cpus // 2))
    return "cpu", dict(pool=max(1, cpus // (2 * threads)), num_gpus=0, num_cpus=threads, threads=threads)


def _decode_rows(
    batch: Dict[str, np.ndarray], spec: ClipSpec, cfg: ExtractConfig, decode: DecodeOptions, done: frozenset
) -> Iterator[Dict[str, np.ndarray]]:
    """Stage 2: the chunks of one listed video (or of every sample of one shard), one row each."""
    torch.set_num_threads(1)  # one CPU per decode task
    if "shards" in batch:
        chunks: ClipChunks = ShardClipChunks(json.loads(batch["shards"][0]), spec, cfg, done.__contains__, decode)
    else:
        chunks = ClipChunks([VideoItem(**json.loads(batch["video"][0]))], spec, cfg, decode)
    index: Dict[str, int] = {}
    start = time.perf_counter()
    for chunk in chunks:  # the time between yields is this task's work; the time inside a yield is Ray's
        name = chunk["name"]
        row: Dict[str, Any] = dict(
            name=name, video=chunk["video"], index=index.get(name, 0), last=False, info="", error="", skipped=False,
            clips_total=chunk.get("clips_total", -1),
        )  # fmt: skip
        index[name] = row["index"] + 1
        if chunk.get("skipped"):
            row.update(skipped=True, last=True)
            frames, times, padded = np.zeros((0,), np.uint8), np.zeros((0, 2)), np.zeros((0,), np.int64)
        elif "error" in chunk:
            row.update(error=chunk["error"], last=True)
            frames, times, padded = np.zeros((0,), np.uint8), np.zeros((0, 2)), np.zeros((0,), np.int64)
        else:
            row.update(last=chunk["last"], info=json.dumps(chunk["info"]) if chunk["last"] else "")
            frames, times, padded = (chunk[k].numpy() for k in ("frames", "times", "num_padded"))
        row["decode_s"] = time.perf_counter() - start
        yield dict({k: [v] for k, v in row.items()}, frames=frames[None], times=times[None], num_padded=padded[None])
        start = time.perf_counter()


def _decode_memory(spec: ClipSpec, cfg: ExtractConfig) -> int:
    """The memory a decode task reserves: its process (torch and the decoder: 500 MB, 900 MB on 720p videos) and a
    few chunks of resized clips. Reserving it also keeps Ray from fusing decoding into the model actors, so decoding
    spreads over every node's CPUs."""
    resize = spec.resize_size  # None: frames as they are, assumed a few times the crop
    side = max(resize) if isinstance(resize, (tuple, list)) else (resize or 4 * spec.crop_size)
    chunk = cfg.batch_size * spec.num_frames * side * side * 2 * 3  # uint8, up to 2:1 frames
    return (1 << 30) + 4 * chunk


def _model_stage(
    model_ref: List[Any], spec: ClipSpec, cfg: ExtractConfig, device: str, inference: InferenceOptions, threads: int
) -> type:
    """Stage 3, the class of a model actor, with its settings inside (so a restarted actor needs no constructor
    arguments from the object store). The model itself is in the object store, owned by the driver."""

    class ModelStage:
        def __init__(self) -> None:
            import ray

            torch.set_num_threads(threads)
            options = InferenceOptions(device, inference.amp, inference.runtime, inference.channels_last)
            # on the CPU, decode tasks share the nodes' cores with it
            self.runner = FeatureRunner(ray.get(model_ref[0]), spec, cfg, options, beside_decoders=device == "cpu")

        def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
            start = time.perf_counter()
            frames = batch.pop("frames")
            if frames[0].size:  # a copy: Ray's batches are read-only views of the object store
                features = self.runner(torch.from_numpy(np.array(frames[0]))).numpy()[None]
            else:
                features = np.zeros((1, 0), np.float32)
            return dict(batch, features=features, model_s=[time.perf_counter() - start])

    return ModelStage


class _Gather:
    """The driver's end: each video's chunks, which come in any order (and, after a retry, perhaps twice), put back
    in order and written once it has them all; errors and skips recorded as in one process."""

    def __init__(self, writer: FolderWriter, bar: Any) -> None:
        self.writer, self.bar = writer, bar
        self.chunks: Dict[str, Dict[int, Dict[str, Any]]] = {}
        self.count: Dict[str, int] = {}  # a video's number of chunks, known once its last one came
        self.finished: set = set()
        self.busy = dict(decode=0.0, model=0.0)

    def run(self, rows: Any) -> ExtractSummary:
        summary, start = self.writer.summary, time.perf_counter()
        for row in rows:
            self.take(row)
            wall = time.perf_counter() - start
            self.bar.set_postfix(
                clips_per_s=f"{summary.clips / wall:.1f}",
                **{f"{k}_busy": f"{v / wall:.2f}" for k, v in self.busy.items()},
            )
            self.bar.update(0)
        self.bar.close()
        if self.chunks:  # cannot happen while Ray returns every row once: say so rather than lose videos quietly
            raise RuntimeError(f"Ray returned incomplete videos: {sorted(self.chunks)}")
        wall = max(time.perf_counter() - start, 1e-9)
        summary.busy = {
            k: dict(busy_seconds=round(v, 3), busy_workers=round(v / wall, 3)) for k, v in self.busy.items()
        }
        _logger.info("stages: %s (busy workers: a stage near its worker count is the bottleneck)", summary.busy)
        return self.writer.finish("ray", start)

    def take(self, row: Dict[str, Any]) -> None:
        name, video = str(row["name"]), str(row["video"])
        if name in self.finished or int(row["index"]) in self.chunks.get(name, {}):
            return  # a chunk of a retried task that came already
        self.busy["decode"] += float(row["decode_s"])
        self.busy["model"] += float(row["model_s"])
        if row["skipped"]:
            self.finished.add(name)
            self.writer.summary.skipped += 1
            self.bar.update(1)
            return
        if row["error"]:
            self.finished.add(name)
            self.chunks.pop(name, None)
            self.count.pop(name, None)
            self.writer.failed(name, video, str(row["error"]))
            self.bar.update(1)
            return
        got = self.chunks.setdefault(name, {})
        got[int(row["index"])] = row
        if row["last"]:
            self.count[name] = int(row["index"]) + 1
        if self.count.get(name) != len(got):
            return  # chunks still to come (its last one says how many)
        parts = [got[i] for i in range(self.count.pop(name))]
        del self.chunks[name]
        self.finished.add(name)
        for p in parts:
            features = torch.from_numpy(np.array(p["features"])) if len(p["times"]) else None
            self.writer.add(name, features, torch.from_numpy(np.array(p["times"])),
                            torch.from_numpy(np.array(p["num_padded"])))  # fmt: skip
        seconds = sum(float(p["decode_s"]) + float(p["model_s"]) for p in parts)
        self.writer.write(name, video, json.loads(parts[-1]["info"]), seconds)
        self.bar.update(1)
