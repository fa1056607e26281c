"""``r21d-zoo dedup``: find pre-training videos that are near-duplicates of any target video, from extracted features.

Each video is described by the mean of its clip features (``r21d-zoo extract`` output: ``<name>.npy`` or
``<name>.safetensors``), centred on the mean over both sets (so features that every video shares do not count) and
L2-normalised. A pre-training video whose cosine similarity to some target video reaches ``threshold`` is a duplicate.
Descriptors of spatial maps (``extract --layer layer2 --spatial-pool none``) keep the layout, which separates copies
(re-encoded, resized, trimmed) from merely similar videos far better than pooled vectors.
The search is exact: pre-training descriptors against all targets in chunks (a matrix product per chunk), so memory
stays bounded for millions of videos.

With ``--shards`` (the packed pre-training set), feature names are matched to samples by their source file's stem (the
name extraction gives a video listed in a CSV), the exclusion list holds sample keys, which ``ShardStream(exclude=...)``
honours, and removals are reported per label.
"""

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

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


def find_duplicates(
    pretrain: torch.Tensor, target: torch.Tensor, threshold: float = 0.8, chunk: int = 4096
) -> List[Tuple[int, int, float]]:
    """(pre-training row, most similar target row, cosine) for every pre-training descriptor at or above
    ``threshold``, after centring both sets on their joint mean; exact search, ``chunk`` pre-training rows at a time."""
    if pretrain.shape[1] != target.shape[1]:
        raise InputError(
            f"pre-training features have {pretrain.shape[1]} dimensions, target features {target.shape[1]}: extract "
            f"both with the same model and layer"
        )
    mean = torch.cat([pretrain, target]).mean(0)
    t = torch.nn.functional.normalize(target - mean, dim=1)
    found = []
    for start in range(0, len(pretrain), chunk):
        p = torch.nn.functional.normalize(pretrain[start : start + chunk] - mean, dim=1)
        best, which = (p @ t.T).max(dim=1)
        for i in torch.nonzero(best >= threshold).flatten().tolist():
            found.append((start + i, int(which[i]), float(best[i])))
    return found


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


def run(cfg: DedupConfig) -> int:
    pre_names, pre = read_descriptors(cfg.pretrain)
    tgt_names, tgt = read_descriptors(cfg.target)
    found = find_duplicates(pre, tgt, cfg.threshold)
    names = [pre_names[i] for i, _, _ in found]
    report: Dict[str, Any] = dict(pretrain=len(pre_names), target=len(tgt_names), removed=len(found))
    if cfg.shards:
        by_stem: Dict[str, Tuple[str, List[str]]] = {
            Path(meta["source"]).stem: (key, label_names(meta)) for key, meta in iter_json(open_shards(cfg.shards).urls)
        }
        unmatched = [n for n in names if Path(n).name not in by_stem]
        if unmatched:
            raise InputError(f"{len(unmatched)} duplicate(s) match no sample of {cfg.shards}, e.g. {unmatched[0]}")
        names = [by_stem[Path(n).name][0] for n in names]
        report["removed_per_label"] = dict(
            Counter(label for n in found for label in by_stem[Path(pre_names[n[0]]).name][1]).most_common()
        )
    atomic_write(Path(cfg.out), lambda f: f.write("".join(f"{n}\n" for n in names).encode()))
    report["pairs"] = [dict(pretrain=pre_names[i], target=tgt_names[j], cosine=round(c, 4)) for i, j, c in found]
    atomic_write(Path(cfg.out + ".json"), lambda f: f.write((json.dumps(report, indent=2) + "\n").encode()))
    print(f"{len(found)} of {len(pre_names)} pre-training videos duplicate a target video: {cfg.out}")
    for label, n in (report.get("removed_per_label") or {}).items():
        print(f"  {label}: {n}")
    return 0
