"""``r21d-zoo dedup``: find pre-training videos that are near-duplicates of any target video, from extracted features.

Each video is described by the mean of its clip features (``r21d-zoo extract`` output, any format), centred on the
mean over both sets (so features that every video shares do not count) and L2-normalised. A pre-training video whose
cosine similarity to some target video reaches ``threshold`` is a duplicate.
Descriptors of spatial maps (``extract --layer layer2 --spatial-pool none``) keep the layout, which separates copies
(re-encoded, resized, trimmed) from merely similar videos far better than pooled vectors; ``--grid N`` pools such maps
to N x N cells (layer2 of R(2+1)D with ``--grid 4``: 2048 numbers a video instead of 128 x 28 x 28).
The default search is exact: the target descriptors are held in memory, the pre-training ones are read from their
files in chunks (a pass for the joint mean, a pass of matrix products), so memory does not grow with the pre-training
set. ``--index faiss`` (``pip install faiss-cpu``) searches an HNSW graph of
the target descriptors instead: approximate, much faster for large target sets. Both folders must come from one
extraction setting (weights, layer, pooling, clip preprocessing: their ``extraction.json``); others are refused.
Left-right mirrored copies have other features than the original (the network is not mirror-invariant):
``--mirrored-target`` adds the targets extracted with ``extract --mirror`` to the search.

With ``--shards`` (the packed pre-training set), feature names are matched to samples by key (``extract`` run on the
shards) or by their source file's stem (``extract`` run on the original videos); the exclusion list holds sample keys,
which ``ShardStream(exclude=...)`` and ``pretrain --exclude`` honour, and removals are reported per label.
"""

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch

from .._errors import InputError
from .._io import atomic_write, writable_file
from ..data.features import FeatureStore, extraction_differences
from ..data.shards import iter_json, label_names, open_shards
from .configs import DedupConfig as DedupConfig

_logger = logging.getLogger("r21d_zoo.progress")


class Descriptors:
    """The descriptor of every video in a feature folder (:class:`~r21d_zoo.data.features.FeatureStore`, any format
    ``r21d-zoo extract`` writes): the mean clip feature, flattened, float32. With ``grid``, a feature that kept its
    spatial axes (``--spatial-pool none``: clips x C [x T] x H x W) is first average-pooled to ``grid`` x ``grid``
    cells, so a layout-aware descriptor stays small. Files are read a chunk at a time (:meth:`chunks`), so memory
    does not grow with the number of videos."""

    def __init__(self, folder: str, grid: Optional[int] = None):
        if grid is not None and grid < 1:
            raise InputError(f"--grid {grid}: give the number of cells per side, at least 1")
        self.store, self.grid = FeatureStore(folder), grid
        if not len(self.store):
            raise InputError(f"{folder}: no feature files (the output of r21d-zoo extract)")
        self.names = self.store.names

    def read(self, name: str) -> torch.Tensor:
        """One video's descriptor."""
        feats = torch.from_numpy(self.store.read(name).features)
        feats = feats.float() if feats.ndim > 1 else feats.float()[None]
        if self.grid:
            if feats.ndim < 4:
                raise InputError(
                    f"{self.store.where(name)}: --grid pools spatial maps, this feature has shape "
                    f"{tuple(feats.shape)}; extract with --spatial-pool none"
                )
            feats = torch.nn.functional.adaptive_avg_pool2d(feats.flatten(1, -3), self.grid)
        return feats.reshape(feats.shape[0], -1).mean(0)

    def chunks(self, size: int) -> Iterator[torch.Tensor]:
        """The descriptors, ``size`` rows at a time, in :attr:`names` order."""
        dim = None
        for start in range(0, len(self.names), size):
            names = self.names[start : start + size]
            rows = [self.read(n) for n in names]
            dim = dim or rows[0].numel()
            bad = next(((n, r.numel()) for n, r in zip(names, rows) if r.numel() != dim), None)
            if bad is not None:
                raise InputError(
                    f"feature files of different sizes: {self.store.where(self.names[0])} gives {dim} numbers, "
                    f"{self.store.where(bad[0])} {bad[1]}; extract them all with one setting"
                )
            yield torch.stack(rows)

    def all(self) -> torch.Tensor:
        return torch.cat(list(self.chunks(4096)))


INDEXES = ("exact", "faiss")


def find_duplicates(
    pretrain: Union[torch.Tensor, Descriptors],
    target: torch.Tensor,
    threshold: float = 0.8,
    chunk: int = 4096,
    index: str = "exact",
) -> List[Tuple[int, int, float]]:
    """(pre-training row, most similar target row, cosine) for every pre-training descriptor at or above
    ``threshold``, after centring both sets on their joint mean. The pre-training rows (a tensor, or a folder's
    :class:`Descriptors`, read twice: for the mean, then to search) go ``chunk`` at a time; ``index``: exact search,
    or faiss's HNSW graph over the targets (approximate)."""
    if index not in INDEXES:
        raise ValueError(f"index must be one of {INDEXES}, got {index!r}")

    def chunks() -> Iterator[torch.Tensor]:
        for rows in pretrain.split(chunk) if isinstance(pretrain, torch.Tensor) else pretrain.chunks(chunk):
            if rows.shape[1] != target.shape[1]:
                raise InputError(
                    f"pre-training features have {rows.shape[1]} dimensions, target features {target.shape[1]}: "
                    "extract both with the same model and layer (and use one --grid)"
                )
            yield rows.to(target.dtype)

    total, count = target.double().sum(0), len(target)
    for rows in chunks():
        total, count = total + rows.double().sum(0), count + len(rows)
    mean = (total / count).to(target.dtype)
    nearest = (_exact if index == "exact" else _hnsw)(torch.nn.functional.normalize(target - mean, dim=1))
    found: List[Tuple[int, int, float]] = []
    start = 0
    for rows in chunks():
        best, which = nearest(torch.nn.functional.normalize(rows - mean, dim=1))
        for i in torch.nonzero(best >= threshold).flatten().tolist():
            found.append((start + i, int(which[i]), float(best[i])))
        start += len(rows)
    return found


Nearest = Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]  # rows -> (best cosine, target index)


def _exact(targets: torch.Tensor) -> Nearest:
    return lambda rows: (rows @ targets.T).max(dim=1)


def _hnsw(targets: torch.Tensor, neighbours: int = 32, ef_search: int = 128) -> Nearest:
    try:
        import faiss
    except ImportError as e:
        raise InputError("--index faiss needs faiss: pip install faiss-cpu (or use the exact search)") from e
    graph = faiss.IndexHNSWFlat(targets.shape[1], neighbours, faiss.METRIC_INNER_PRODUCT)
    graph.add(targets.float().numpy())
    graph.hnsw.efSearch = ef_search

    def nearest(rows: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        scores, which = graph.search(rows.float().numpy(), 1)
        return torch.from_numpy(scores[:, 0]), torch.from_numpy(which[:, 0])

    return nearest


def _mirrored_targets(cfg: DedupConfig, target: Descriptors) -> Descriptors:
    """The targets' mirror-image descriptors: the same videos and extraction as ``target`` but for ``mirror``."""
    mirrored = Descriptors(cfg.mirrored_target, cfg.grid)
    differences = extraction_differences(target.store, mirrored.store)
    if target.store.settings() is None or mirrored.store.settings() is None or differences != ["mirror: None vs True"]:
        raise InputError(
            f"--mirrored-target {cfg.mirrored_target} is not {cfg.target} extracted with --mirror "
            f"({'; '.join(differences) or 'no mirror setting recorded'}); extract the target videos again with the "
            f"same settings plus --mirror into it"
        )
    if mirrored.names != target.names:
        missing = sorted(set(target.names) ^ set(mirrored.names))
        raise InputError(
            f"--mirrored-target {cfg.mirrored_target} and --target {cfg.target} hold other videos (e.g. "
            f"{missing[0]}); extract the same target videos into both"
        )
    return mirrored


def run(cfg: DedupConfig) -> int:
    writable_file(cfg.out, "-o")
    pre, target = Descriptors(cfg.pretrain, cfg.grid), Descriptors(cfg.target, cfg.grid)
    differences = extraction_differences(pre.store, target.store)
    if differences:
        raise InputError(
            f"{cfg.pretrain} and {cfg.target} hold features of different extractions ({'; '.join(differences)}), "
            "which cannot be compared; extract both with the same model, layer, pooling and clip settings"
        )
    for store in (pre.store, target.store):
        if store.settings() is None:
            _logger.warning("%s has no extraction.json: cannot check that the folders were extracted alike", store.root)
    pre_names, tgt_names = pre.names, target.names
    targets = target.all()
    if cfg.mirrored_target:  # a flipped copy's features are the mirror image's: search both
        targets = torch.cat([targets, _mirrored_targets(cfg, target).all()])
        tgt_names = tgt_names + [f"{name} (mirrored)" for name in tgt_names]
    found = find_duplicates(pre, targets, cfg.threshold, index=cfg.index)
    names = [pre_names[i] for i, _, _ in found]
    report: Dict[str, Any] = dict(pretrain=len(pre_names), target=len(target.names), removed=len(found))
    if cfg.shards:
        samples: Dict[str, Tuple[str, List[str]]] = {}  # a feature name (key or source stem) -> (key, labels)
        for key, meta in iter_json(open_shards(cfg.shards).urls):
            samples[Path(meta["source"]).stem] = samples[key] = (key, label_names(meta))
        unmatched = [n for n in names if Path(n).name not in samples]
        if unmatched:
            raise InputError(f"{len(unmatched)} duplicate(s) match no sample of {cfg.shards}, e.g. {unmatched[0]}")
        matched = [samples[Path(n).name] for n in names]
        names = [key for key, _ in matched]
        report["removed_per_label"] = dict(Counter(label for _, labels in matched for label in labels).most_common())
    atomic_write(Path(cfg.out), lambda f: f.write("".join(f"{n}\n" for n in names).encode()))
    report["pairs"] = [dict(pretrain=pre_names[i], target=tgt_names[j], cosine=round(c, 4)) for i, j, c in found]
    atomic_write(Path(cfg.out + ".json"), lambda f: f.write((json.dumps(report, indent=2) + "\n").encode()))
    print(f"{len(found)} of {len(pre_names)} pre-training videos duplicate a target video: {cfg.out}")
    for label, n in (report.get("removed_per_label") or {}).items():
        print(f"  {label}: {n}")
    return 0
