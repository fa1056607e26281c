"""Sharded, streamed video data on WebDataset: pack labelled videos into tar shards, count their labels, choose a
tail-preserving subset, and stream the shards (split by node, then by worker, in an order fixed by seed and epoch),
decoding each video from memory with our decoder.

A sample is ``<key>.<ext>`` (the encoded video as it was packed) plus ``<key>.json``: ``{"labels": [names],
"source": path}``. A packed folder also holds ``index.json``: the class names and the shards in order with their
sample counts, so an epoch's length is known without reading the shards.

Sampling (``natural``, ``sqrt``, ``uniform``) is applied while streaming: a sample is emitted ``m`` times in
expectation (``floor(m)`` copies plus one more with probability ``m - floor(m)``; each copy is its own random clip),
with ``m`` proportional to the target share of its label over its natural share (``sqrt``: 1/sqrt(n), ``uniform``:
1/n for a label with ``n`` videos) and scaled so an epoch keeps its natural length in expectation. **Several labels:**
a sample's ``m`` is the smallest of its labels' weights (so a head label never rides along on an up-weighted tail
video), a label's share counts every emitted sample that carries it, and the weights are solved for from the label
sets of the multi-label videos (``label_sets`` of ``shards stats``) so that the shares meet their targets; where no
weights meet them exactly the closest found are used, and ``shards stats`` reports the shares achieved.
"""

import hashlib
import json
import logging
import os
import random
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .._io import atomic_write
from .._progress import progress
from ..models import ClipSpec
from ..video import VideoDecodeError, open_video, random_clip
from ..video.reader import DEFAULT_DECODER, VIDEO_EXTENSIONS
from .._errors import InputError
from .._world import WorldInfo, world_info_from_env
from .inputs import read_name_list
from .labelled import LabelledVideos
from .seeds import epoch_seed

_logger = logging.getLogger("r21d_zoo.progress")
INDEX = "index.json"
SAMPLINGS = ("natural", "sqrt", "uniform")
VIDEO_MEMBERS = tuple(e.lstrip(".") for e in VIDEO_EXTENSIONS)  # a sample's video member, by extension


# ------------------------------------------------------------------------------------------------------------------
# Packing
# ------------------------------------------------------------------------------------------------------------------


def sample_key(path: str, root: Optional[str] = None) -> str:
    """A WebDataset key for a video: its path (relative to ``root``) without the extension, with every character a
    key cannot hold ('.', '/', spaces ...) replaced, so keys also name feature files."""
    rel = os.path.relpath(path, root) if root else os.path.basename(path)
    stem = os.path.splitext(rel)[0].replace(os.sep, "__")
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem)


def pack_shards(
    data: LabelledVideos,
    out_dir: str,
    shard_mb: float = 1000.0,
    max_per_shard: int = 10000,
    prefix: str = "shard",
    check_videos: bool = True,
) -> Dict[str, Any]:
    """Write ``data`` as ``out_dir/<prefix>-000000.tar`` ... of at most ``shard_mb`` MB / ``max_per_shard`` samples,
    then ``index.json``. Each shard is written to a temp file and renamed when complete. A file with no decodable
    video frame (text, audio only, empty, cut short before its first frame) is left out and listed in the index's
    ``skipped`` with why (``check_videos=False``: every file is packed as it is, e.g. placeholder bytes). Returns the
    index."""
    import webdataset as wds

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = os.path.commonpath([os.path.dirname(os.path.abspath(s.path)) for s in data.samples])
    shards: List[Dict[str, Any]] = []
    keys: Set[str] = set()
    writer, tmp, size, count = None, None, 0, 0

    def close() -> None:
        nonlocal writer
        if writer is not None:
            writer.close()
            name = f"{prefix}-{len(shards):06d}.tar"
            os.replace(tmp, out / name)
            shards.append(dict(url=name, count=count))
            writer = None

    skipped: List[Dict[str, str]] = []
    checked: Dict[str, Optional[str]] = {}  # a file listed twice is checked once
    for s in progress(data.samples, desc="pack", unit="video"):
        if check_videos and s.path not in checked:
            checked[s.path] = _undecodable(s.path)
        problem = checked.get(s.path)
        if problem:
            skipped.append(dict(path=s.path, error=problem))
            continue
        video = Path(s.path).read_bytes()
        if writer is not None and (count >= max_per_shard or size + len(video) > shard_mb * 2**20):
            close()
        if writer is None:
            tmp = out / f".{prefix}-{len(shards):06d}.tar.{os.getpid()}.part"
            writer, size, count = wds.TarWriter(str(tmp)), 0, 0
        key = base = sample_key(os.path.abspath(s.path), root)
        n = 1
        while key in keys:
            n, key = n + 1, f"{base}_{n + 1}"
        keys.add(key)
        meta = dict(labels=[data.classes[i] for i in s.labels], source=s.path)
        writer.write({"__key__": key, Path(s.path).suffix.lower().lstrip("."): video, "json": meta})
        size, count = size + len(video), count + 1
    close()
    index = dict(classes=list(data.classes), multilabel=data.multilabel, shards=shards, total=len(keys))
    if skipped:
        index["skipped"] = skipped
    atomic_write(out / INDEX, lambda f: f.write((json.dumps(index, indent=2) + "\n").encode()))
    return index


def _undecodable(path: str) -> Optional[str]:
    """Why ``path`` gives no video frame, or None when its first frame decodes."""
    try:
        with open_video(path) as reader:
            reader.read_clip(0.0, 1)
    except VideoDecodeError as e:
        return str(e).split("\n")[0]
    return None


# ------------------------------------------------------------------------------------------------------------------
# Shard lists, label statistics, subsets
# ------------------------------------------------------------------------------------------------------------------


@dataclass
class ShardSet:
    """Shard URLs (local paths, http(s), ``pipe:`` ... anything WebDataset opens) with their sample counts when an
    ``index.json`` gave them, the class names and whether samples may carry several labels."""

    urls: List[str]
    counts: Optional[List[int]] = None
    classes: Optional[List[str]] = None
    multilabel: bool = False

    @property
    def total(self) -> Optional[int]:
        return sum(self.counts) if self.counts is not None else None


def open_shards(source: str) -> ShardSet:
    """A packed folder or its ``index.json``; otherwise shard URLs, brace patterns allowed (``s-{000..009}.tar``)."""
    from braceexpand import braceexpand

    path = Path(source)
    index = path / INDEX if path.is_dir() else path if path.name == INDEX else None
    if index is not None:
        if not index.is_file():
            raise InputError(f"{source}: no {INDEX}; pack videos with `r21d-zoo shards pack` or pass shard URLs")
        meta = json.loads(index.read_text(encoding="utf-8"))
        urls = [
            u if "://" in u or u.startswith("pipe:") else str(index.parent / u)
            for u in (s["url"] for s in meta["shards"])
        ]
        counts = [int(s["count"]) for s in meta["shards"]]
        return ShardSet(urls, counts, meta.get("classes"), bool(meta.get("multilabel")))
    urls = list(braceexpand(source))
    local = [u for u in urls if "://" not in u and not u.startswith("pipe:")]
    missing = [u for u in local if not Path(u).is_file()]
    if missing:
        raise InputError(f"shard {missing[0]} does not exist ({len(missing)} of {len(urls)} missing)")
    return ShardSet(urls)


def is_shard_source(source: str) -> bool:
    """Whether ``source`` names shards rather than videos: a packed folder (with ``index.json``), an ``index.json``,
    ``.tar`` files or brace patterns of them, or a URL / ``pipe:`` command."""
    path = Path(source)
    if (path.is_dir() and (path / INDEX).is_file()) or path.name == INDEX:
        return True
    return source.startswith("pipe:") or "://" in source or bool(re.search(r"\.tar([}.]|$)", source))


def label_names(meta: Dict[str, Any]) -> List[str]:
    """The label names of a sample's parsed json member."""
    return [str(x) for x in meta["labels"]]


def shard_samples(
    urls: Sequence[str],
    select_files: Optional[Callable[[str], bool]] = None,
    require: Optional[str] = "json",
    failures: Optional[List[Tuple[str, str]]] = None,
) -> Iterator[Dict[str, Any]]:
    """The samples of ``urls`` in order, read by WebDataset. A shard that cannot be opened or read to its end
    (missing, truncated, not a tar, a failed download) is logged and left, keeping the whole samples before the
    damage, and so is a sample without its ``require`` member; each such problem is also appended to ``failures`` as
    (shard URL, message). A long job thus loses what is damaged, not the run."""
    from webdataset.tariterators import tarfile_samples

    def skip(url: str, problem: str) -> None:
        _logger.warning("skipping damaged shard data: %s: %s", url, problem)
        if failures is not None:
            failures.append((url, f"{url}: {problem}"))

    for url in urls:
        try:
            for sample in tarfile_samples([dict(url=url)], select_files=select_files):
                if require is None or require in sample:
                    yield sample
                else:
                    skip(url, f"sample {sample['__key__']} has no {require} member")
        except Exception as exn:  # WebDataset appends the stream and URL to the arguments: keep the first
            first = str(exn.args[0]).split(" @ <")[0] if exn.args else ""
            skip(url, f"{type(exn).__name__}: {first}")


def iter_json(
    urls: Sequence[str], failures: Optional[List[Tuple[str, str]]] = None
) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """(key, parsed json member) of every sample, reading only the json members (see :func:`shard_samples`)."""
    for sample in shard_samples(urls, lambda name: name.endswith(".json"), failures=failures):
        yield sample["__key__"], json.loads(sample["json"])


def iter_metadata(
    urls: Sequence[str], failures: Optional[List[Tuple[str, str]]] = None
) -> Iterator[Tuple[str, List[str]]]:
    """(key, label names) of every sample."""
    for key, meta in iter_json(urls, failures):
        yield key, label_names(meta)


def is_selected(key: str, include: Optional[Set[str]], exclude: Optional[Set[str]]) -> bool:
    """Whether a sample is used: in ``include`` (a subset index; ``None``: every sample) and not in ``exclude``."""
    return (include is None or key in include) and not (exclude and key in exclude)


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shards_digest(shards: ShardSet) -> str:
    """A fingerprint of which shards these are, wherever they lie and however they are named (a packed folder, its
    index or a URL pattern): each shard's file name and, for local files, size in bytes. Label counts made over
    other shards are then not used to sample these."""
    names = [
        (url.rstrip("/").rsplit("/", 1)[-1], Path(url).stat().st_size if Path(url).is_file() else None)
        for url in shards.urls
    ]
    return _fingerprint(json.dumps(names))


def selection_digest(include: Optional[Set[str]], exclude: Optional[Set[str]]) -> Dict[str, Optional[str]]:
    """Fingerprints of the key lists that select the samples, recorded with label counts so that counts made on one
    selection are not used to sample another (``None``: no list)."""

    def digest(keys: Optional[Set[str]]) -> Optional[str]:
        return None if keys is None else _fingerprint("\n".join(sorted(keys)))

    return dict(include=digest(include), exclude=digest(exclude or None))


def label_stats(
    shards: ShardSet, include: Optional[Set[str]] = None, exclude: Optional[Set[str]] = None
) -> Dict[str, Any]:
    """One pass over the shards, over the samples that ``include`` and ``exclude`` select (recorded as ``selection``;
    the shards as ``shards``): videos per label, videos, multi-label videos, ``label_sets`` (the label sets of
    multi-label videos with their counts: what sampling solves with), for ``sqrt`` and ``uniform`` sampling each
    label's target and achieved share and the worst relative error; ``unreadable`` lists the damaged shard data that
    was left out."""
    counts: Counter = Counter()
    sets: Counter = Counter()
    videos = 0
    failures: List[Tuple[str, str]] = []
    metadata = iter_metadata(shards.urls, failures)
    for key, labels in progress(metadata, desc="stats", unit="video", total=shards.total):
        if not is_selected(key, include, exclude):
            continue
        videos += 1
        distinct = set(labels)
        counts.update(distinct)
        if len(distinct) > 1:
            sets[tuple(sorted(distinct))] += 1
    ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    label_sets = [[list(labels), n] for labels, n in sorted(sets.items())]
    sampling = {}
    for name in ("sqrt", "uniform") if ordered else ():
        target = target_shares(ordered, name)
        achieved = achieved_shares(ordered, sampling_multiplicity(ordered, name, label_sets), label_sets)
        worst = max(target, key=lambda k: abs(achieved[k] / target[k] - 1))
        sampling[name] = dict(
            worst_label=worst,
            worst_relative_error=abs(achieved[worst] / target[worst] - 1),
            shares={k: dict(target=target[k], achieved=achieved[k]) for k in ordered},
        )
    return dict(
        videos=videos,
        multilabel_videos=sum(sets.values()),
        labels=len(counts),
        label_counts=ordered,
        label_sets=label_sets,
        sampling=sampling,
        selection=selection_digest(include, exclude),
        shards=shards_digest(shards),
        unreadable=[message for _, message in failures],
    )


LabelSets = Sequence[Tuple[Sequence[str], int]]  # (the labels of multi-label videos, how many videos carry them)


def target_shares(label_counts: Dict[str, int], sampling: str) -> Dict[str, float]:
    """Each label's share of the emitted labels under ``sampling``: proportional to ``n``, ``sqrt(n)`` or 1."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    power = dict(natural=1.0, sqrt=0.5, uniform=0.0)[sampling]
    target = {k: n**power for k, n in label_counts.items() if n}
    norm = sum(target.values())
    return {k: v / norm for k, v in target.items()}


class _Mixing:
    """How per-label weights become label emissions: single-label videos of label l are emitted ``w[l]`` times each,
    a multi-label video ``min(w[its labels])`` times, and each emitted video counts once for each of its labels."""

    def __init__(self, label_counts: Dict[str, int], label_sets: Optional[LabelSets]):
        self.labels = [k for k, n in label_counts.items() if n]
        index = {k: i for i, k in enumerate(self.labels)}
        single = [float(label_counts[k]) for k in self.labels]
        members, of_set, counts = [], [], []
        for labels, count in label_sets or ():
            ids = sorted({index[k] for k in labels if k in index})
            if len(ids) < 2:
                continue
            for i in ids:
                single[i] -= count
                members.append(i)
                of_set.append(len(counts))
            counts.append(float(count))
        self.single = torch.tensor(single, dtype=torch.float64)
        self.members, self.of_set = torch.tensor(members, dtype=torch.long), torch.tensor(of_set, dtype=torch.long)
        self.counts = torch.tensor(counts, dtype=torch.float64)

    def emitted(self, w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(emissions per label, videos emitted) for weights ``w``."""
        per_set = torch.full_like(self.counts, float("inf")).scatter_reduce(
            0, self.of_set, w[self.members], reduce="amin"
        )
        own, shared = self.single * w, self.counts * per_set
        return own.index_add(0, self.members, shared[self.of_set]), own.sum() + shared.sum()

    @property
    def videos(self) -> float:
        return float(self.single.sum() + self.counts.sum())


def sampling_multiplicity(
    label_counts: Dict[str, int], sampling: str, label_sets: Optional[LabelSets] = None, iterations: int = 10_000
) -> Dict[str, float]:
    """Per-label weights ``w``: a video is emitted ``min(w[its labels])`` times per epoch in expectation, solved so
    that each label's share of the emitted labels is its :func:`target_shares` and an epoch keeps its length.

    Single-label data: ``w`` is the ratio of the target to the natural share. With ``label_sets`` (multi-label data)
    the weights are found by multiplicative updates, ``w *= target / achieved``, which keep them non-negative and
    reach the targets where some weights do; where none do, they end at the closest they found
    (:func:`achieved_shares` says how close)."""
    target = target_shares(label_counts, sampling)
    mixing = _Mixing(label_counts, label_sets)
    t = torch.tensor([target[k] for k in mixing.labels], dtype=torch.float64)
    natural = torch.tensor([float(label_counts[k]) for k in mixing.labels], dtype=torch.float64)
    w = t / (natural / natural.sum())
    for _ in range(iterations if len(mixing.counts) else 0):
        emitted, videos = mixing.emitted(w)
        ratio = t / (emitted / emitted.sum()).clamp_min(1e-300)
        if (ratio - 1).abs().max() < 1e-9:
            break
        # a label seen only beside others cannot pass their weights: its own weight then grows without effect
        w = (w * ratio * (mixing.videos / videos)).clamp(max=1e15)
    _, videos = mixing.emitted(w)
    return dict(zip(mixing.labels, (w * (mixing.videos / videos)).tolist()))


def achieved_shares(
    label_counts: Dict[str, int], weights: Dict[str, float], label_sets: Optional[LabelSets] = None
) -> Dict[str, float]:
    """Each label's expected share of the emitted labels under the weights of :func:`sampling_multiplicity`."""
    mixing = _Mixing(label_counts, label_sets)
    emitted, _ = mixing.emitted(torch.tensor([weights[k] for k in mixing.labels], dtype=torch.float64))
    return dict(zip(mixing.labels, (emitted / emitted.sum()).tolist()))


def tail_preserving_subset(samples: Sequence[Tuple[str, List[str]]], n: int, seed: int = 0) -> List[str]:
    """``n`` keys that keep every video of the rarest labels and sub-sample the frequent ones to a common cap (water
    filling: labels with at most ``cap`` videos are kept whole, the others get ``cap`` or ``cap + 1`` at random).
    A multi-label video belongs to its rarest label here."""
    if not 0 < n <= len(samples):
        raise ValueError(f"a subset of {n} videos needs 1 <= n <= {len(samples)}")
    counts = Counter(label for _, labels in samples for label in set(labels))
    by_label: Dict[str, List[str]] = {}
    for key, labels in samples:
        rarest = min(labels, key=lambda lab: (counts[lab], lab)) if labels else ""
        by_label.setdefault(rarest, []).append(key)
    sizes = sorted(len(v) for v in by_label.values())
    cap, remaining, left = 0, n, len(sizes)
    for s in sizes:  # the largest cap with sum(min(size, cap)) <= n
        if s * left > remaining:
            cap = remaining // left
            break
        remaining, left, cap = remaining - s, left - 1, s
    rng = random.Random(seed)
    chosen: List[str] = []
    heads = []
    for label in sorted(by_label, key=lambda lab: (len(by_label[lab]), lab)):
        keys = sorted(by_label[label])
        if len(keys) <= cap:
            chosen += keys
        else:
            rng.shuffle(keys)
            chosen += keys[:cap]
            heads.append(keys[cap:])
    extra = n - len(chosen)  # the remainder: one more video from as many head labels as needed
    for keys in rng.sample(heads, extra) if extra else []:
        chosen.append(keys[0])
    return chosen


def read_key_list(path: Optional[str]) -> Optional[Set[str]]:
    """Keys, one per line (a subset index or an exclusion list)."""
    return read_name_list(path, "a list of sample keys (written by `shards subset` or `dedup`)")


# ------------------------------------------------------------------------------------------------------------------
# Streaming
# ------------------------------------------------------------------------------------------------------------------


def split_shards(
    urls: Sequence[str], seed: int, epoch: int, rank: int, world: int, worker: int, workers: int
) -> List[str]:
    """This (rank, worker)'s shards: all shards shuffled by (seed, epoch), dealt to ranks, then to workers."""
    order = list(urls)
    random.Random(epoch_seed(seed, epoch, 0)).shuffle(order)
    return order[rank::world][worker::workers]


class ShardStream(IterableDataset):
    """Training samples streamed from shards: ``(uint8 clip T x H x W x C, target, key, position)`` with a random
    clip per emitted copy, or ``(key, label names)`` with ``decode=False``. Each rank reads its own shards, each worker
    its own share; the order depends only on (seed, epoch, rank, worker). Emitted copies pass through a shuffle
    buffer of ``shuffle`` items (raw bytes, decoded when they leave it), so a sample's copies under ``sqrt`` and
    ``uniform`` are spread out. Unreadable videos are logged and skipped.

    ``target``: a class index, or for multi-label data the label vector normalised to sum 1 (``multilabel``).
    ``position``: ``[stream, index]``, the loader stream and the item's place in it, which
    :func:`~r21d_zoo.train.loop.fit_stream` keeps to resume mid-epoch (:meth:`set_position`).
    ``include``/``exclude``: key sets (a subset index, a de-duplication list). ``label_counts``: videos per label over
    the samples they select (``r21d-zoo shards stats`` with the same lists), needed by ``sqrt`` and ``uniform``."""

    def __init__(
        self,
        shards: ShardSet,
        spec: Optional[ClipSpec] = None,
        classes: Optional[Sequence[str]] = None,
        sampling: str = "natural",
        label_counts: Optional[Dict[str, int]] = None,
        label_sets: Optional[LabelSets] = None,
        seed: int = 0,
        world: Optional[WorldInfo] = None,
        include: Optional[Set[str]] = None,
        exclude: Optional[Set[str]] = None,
        decode: bool = True,
        multilabel: bool = False,
        shuffle: int = 64,
        decoder: str = DEFAULT_DECODER,
    ):
        self.shards, self.spec, self.seed, self.epoch = shards, spec or ClipSpec(), seed, 0
        self.classes = list(classes or shards.classes or [])
        self.index = {c: i for i, c in enumerate(self.classes)}
        if sampling != "natural" and not label_counts:
            raise InputError(f"{sampling} sampling needs label counts: run `r21d-zoo shards stats` first")
        self.sampling, self.label_counts, self.label_sets = sampling, label_counts, label_sets or None
        self.multiplicity = sampling_multiplicity(label_counts, sampling, label_sets) if sampling != "natural" else None
        self.world = world or world_info_from_env()
        self.include, self.exclude, self.decode = include, exclude or set(), decode
        self.multilabel, self.shuffle, self.decoder = multilabel, shuffle, decoder
        self.marks: Dict[int, int] = {}
        self.first = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order_key(self) -> Dict[str, Any]:
        """What fixes the order and the copies of the items: a position saved in one run holds in another only when
        this is equal (:func:`~r21d_zoo.train.loop.fit_stream` checks it on resume)."""
        counts = _fingerprint(json.dumps(self.label_counts, sort_keys=True))
        if self.label_sets:  # single-label runs keep the fingerprint earlier versions recorded
            counts = _fingerprint(json.dumps([self.label_counts, self.label_sets], sort_keys=True))
        return dict(
            shards=_fingerprint("\n".join(self.shards.urls)),
            seed=self.seed,
            policy=self.sampling,  # the name runs resumed from earlier versions recorded
            label_counts=counts if self.multiplicity is not None else None,
            selection=selection_digest(self.include, self.exclude),
            shuffle=self.shuffle,
        )

    def set_position(self, marks: Dict[int, Sequence[int]], first: int = 0) -> None:
        """Continue this epoch after ``marks`` (stream -> ``[index]`` of its last item consumed); worker ``w`` serves
        stream ``(w + first) % workers``. The skipped items are read but not decoded."""
        self.marks, self.first = {int(k): int(v[0]) for k, v in marks.items()}, first

    def clip_generator(self, key: str, copy: int = 0) -> torch.Generator:
        """The generator of one emitted copy's random clip: a function of (seed, epoch, key, copy) only, so a clip
        does not depend on which rank or worker reads the sample."""
        clip_id = zlib.crc32(f"{key}/{copy}".encode())  # not hash(), which differs between processes
        return torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, clip_id))

    def _copies(self, labels: List[str], rng: random.Random) -> int:
        if self.multiplicity is None:
            return 1
        m = min((self.multiplicity.get(lab, 0.0) for lab in labels), default=0.0)
        return int(m) + (rng.random() < m - int(m))

    def _target(self, labels: List[str]) -> torch.Tensor:
        unknown = [lab for lab in labels if lab not in self.index]
        if unknown:
            raise InputError(f"label {unknown[0]!r} is not one of the {len(self.classes)} classes")
        if not self.multilabel:
            return torch.tensor(self.index[labels[0]])
        target = torch.zeros(len(self.classes))
        target[[self.index[lab] for lab in labels]] = 1.0
        return target / target.sum()

    def _clip(self, sample: Dict[str, Any], g: torch.Generator) -> torch.Tensor:
        ext = next((e for e in VIDEO_MEMBERS if e in sample), None)
        if ext is None:
            raise VideoDecodeError(f"{sample['__key__']}: no video member ({', '.join(VIDEO_MEMBERS)})")
        with open_video(sample[ext], self.spec, self.decoder) as r:
            start = random_clip(r.info.duration, self.spec.clip_seconds(r.info.fps), g).start
            return r.read_spec_clip(start, self.spec).frames

    def _items(self, stream: int, streams: int) -> Iterator[Tuple[Dict[str, Any], List[str], int]]:
        """(sample, label names, copy) of one stream in emission order."""
        world = self.world
        urls = split_shards(self.shards.urls, self.seed, self.epoch, world.rank, world.world_size, stream, streams)
        stream_id = (world.rank * 1000 + stream) * 1000
        rng = random.Random(epoch_seed(self.seed, self.epoch, stream_id + 7))  # copies
        order = random.Random(epoch_seed(self.seed, self.epoch, stream_id + 8))  # the shuffle buffer
        wanted = None if self.decode else (lambda name: name.endswith(".json"))
        buffer: List[Tuple[Dict[str, Any], List[str], int]] = []
        for sample in shard_samples(urls, wanted):
            key, labels = sample["__key__"], label_names(json.loads(sample["json"]))
            if not is_selected(key, self.include, self.exclude):
                continue
            for copy in range(self._copies(labels, rng)):
                buffer.append((sample, labels, copy))
                if len(buffer) >= self.shuffle:
                    yield _pop_random(buffer, order)
        while buffer:
            yield _pop_random(buffer, order)

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, streams = (info.id, info.num_workers) if info else (0, 1)
        stream = (worker + self.first) % streams
        skip = self.marks.get(stream, -1)
        unreadable: Set[str] = set()
        for index, (sample, labels, copy) in enumerate(self._items(stream, streams)):
            key = sample["__key__"]
            if index <= skip or key in unreadable:
                continue
            if not self.decode:
                yield key, labels
                continue
            try:
                clip = self._clip(sample, self.clip_generator(key, copy))
            except VideoDecodeError as e:
                _logger.warning("skipping an unreadable video in %s: %s", sample.get("__url__"), e)
                unreadable.add(key)
                continue
            yield clip, self._target(labels), key, torch.tensor([stream, index])


def _pop_random(buffer: List[Any], rng: random.Random) -> Any:
    j = rng.randrange(len(buffer))
    buffer[j], buffer[-1] = buffer[-1], buffer[j]
    return buffer.pop()


def shard_inputs(inputs: Sequence[str]) -> Optional[ShardSet]:
    """The inputs as one set of WebDataset shards when they are shards (packed folders, ``index.json``, ``.tar``
    files, brace patterns, URLs), None when they are videos; a mix is an error."""
    kinds = [is_shard_source(x) for x in inputs]
    if not any(kinds):
        return None
    if not all(kinds):
        raise InputError("pass either WebDataset shards or videos to one run, not both")
    sets = [open_shards(x) for x in inputs]
    counts = [c for s in sets for c in s.counts] if all(s.counts is not None for s in sets) else None
    return ShardSet([u for s in sets for u in s.urls], counts)
