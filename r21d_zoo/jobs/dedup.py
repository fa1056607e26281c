"""``r21d-zoo dedup``: find pre-training videos that are near-duplicates of any target video, from extracted features.

Each video is described by the mean of its clip features (``r21d-zoo extract`` output: ``<name>.npy`` or
``<name>.safetensors``), centred on the mean over both sets (so features that every video shares do not count) and
L2-normalised. A pre-training video whose cosine similarity to some target video reaches ``threshold`` is a duplicate.
Descriptors of spatial maps (``extract --layer layer2 --spatial-pool none``) keep the layout, which separates copies
(re-encoded, resized, trimmed) from merely similar videos far better than pooled vectors.
The default search is exact: pre-training descriptors against all targets in chunks (a matrix product per chunk), so
memory stays bounded for millions of videos. ``--index faiss`` (``pip install faiss-cpu``) searches an HNSW graph of
the target descriptors instead: approximate, much faster for large target sets.

With ``--shards`` (the packed pre-training set), feature names are matched to samples by key (``extract`` run on the
shards) or by their source file's stem (``extract`` run on the original videos); the exclusion list holds sample keys,
which ``ShardStream(exclude=...)`` and ``pretrain --exclude`` honour, and removals are reported per label.
"""

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple

import numpy as np
import torch

from .._io import atomic_write
from .common import InputError
from .shards import iter_json, label_names, open_shards

_logger = logging.getLogger("r21d_zoo.progress")


def read_descriptors(folder: str) -> Tuple[List[str], torch.Tensor]:
    """Feature names (relative to ``folder``, no extension) and the mean clip feature of each, float64."""
    root = Path(folder)
    files = sorted(
        f
        for f in root.rglob("*")
        if (f.suffix == ".npy" and not f.name.endswith(".times.npy")) or f.suffix == ".safetensors"
    )
    if not files:
        raise InputError(f"{folder}: no feature files (<name>.npy or <name>.safetensors from r21d-zoo extract)")
    names, rows = [], []
    for f in files:
        if f.suffix == ".npy":
            feats = np.load(f)
        else:
            from safetensors.numpy import load_file

            feats = load_file(str(f))["features"]
        feats = feats.reshape(feats.shape[0], -1) if feats.ndim > 1 else feats[None]
        names.append(f.relative_to(root).with_suffix("").as_posix())
        rows.append(torch.from_numpy(feats.astype(np.float64)).mean(0))
    dims = {r.numel() for r in rows}
    if len(dims) > 1:
        raise InputError(f"{folder}: feature files of different sizes {sorted(dims)}; extract them with one setting")
    return names, torch.stack(rows)


INDEXES = ("exact", "faiss")


def find_duplicates(
    pretrain: torch.Tensor, target: torch.Tensor, threshold: float = 0.8, chunk: int = 4096, index: str = "exact"
) -> List[Tuple[int, int, float]]:
    """(pre-training row, most similar target row, cosine) for every pre-training descriptor at or above
    ``threshold``, after centring both sets on their joint mean, ``chunk`` pre-training rows at a time; ``index``:
    exact search, or faiss's HNSW graph over the targets (approximate)."""
    if index not in INDEXES:
        raise ValueError(f"index must be one of {INDEXES}, got {index!r}")
    if pretrain.shape[1] != target.shape[1]:
        raise InputError(
            f"pre-training features have {pretrain.shape[1]} dimensions, target features {target.shape[1]}: extract "
            f"both with the same model and layer"
        )
    mean = torch.cat([pretrain, target]).mean(0)
    t = torch.nn.functional.normalize(target - mean, dim=1)
    nearest = _exact(t) if index == "exact" else _hnsw(t)
    found = []
    for start in range(0, len(pretrain), chunk):
        best, which = nearest(torch.nn.functional.normalize(pretrain[start : start + chunk] - mean, dim=1))
        for i in torch.nonzero(best >= threshold).flatten().tolist():
            found.append((start + i, int(which[i]), float(best[i])))
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
        return torch.from_numpy(scores[:, 0]).double(), torch.from_numpy(which[:, 0])

    return nearest


@dataclass
class DedupConfig:
    """Find pre-training videos that near-duplicate target videos (cosine over extracted features); write their list."""

    pretrain: str = field(metadata=dict(help="feature folder of the pre-training videos (r21d-zoo extract -o)"))
    target: str = field(metadata=dict(help="feature folder of the target videos (e.g. Kinetics, UCF101, HMDB51)"))
    out: str = field(metadata=dict(flag=("-o", "--out"), help="exclusion list to write, one name or key per line"))
    threshold: float = field(default=0.8, metadata=dict(help="cosine similarity at which a video is a duplicate"))
    shards: Optional[str] = field(
        default=None, metadata=dict(help="the packed pre-training shards: write sample keys and report per label")
    )
    index: Literal["exact", "faiss"] = field(
        default="exact", metadata=dict(help="exact search in chunks, or faiss HNSW over the targets (approximate)")
    )


def run(cfg: DedupConfig) -> int:
    pre_names, pre = read_descriptors(cfg.pretrain)
    tgt_names, tgt = read_descriptors(cfg.target)
    found = find_duplicates(pre, tgt, cfg.threshold, index=cfg.index)
    names = [pre_names[i] for i, _, _ in found]
    report: Dict[str, Any] = dict(pretrain=len(pre_names), target=len(tgt_names), removed=len(found))
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
