"""Linear probe on extracted features (the paper's fc-only protocol on frozen features): L2-regularised multinomial
logistic regression (or one sigmoid per label with mAP for multi-label data), full-batch L-BFGS on standardised
features, the regularisation strength chosen on a held-out 10% of the training videos and then refit on all of them.

Features come from ``r21d-zoo extract`` (any format of :mod:`r21d_zoo.data.features`; clip features averaged per
video) and labels from the same CSV/list/folder formats as fine-tuning, matched by file name.
"""

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .._progress import progress as show_progress
from ..data.features import FeatureStore
from ..data.labelled import LabelledVideos
from ..train.logistic import fit_logistic
from ..infer.metrics import average_precision
from .configs import ProbeJobConfig as ProbeJobConfig

_logger = logging.getLogger(__name__)
DEFAULT_L2 = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _score(x, y, w, b, multilabel: bool) -> float:
    logits = x @ w + b
    if multilabel:
        return float(average_precision(torch.sigmoid(logits), y).nanmean())
    return float((logits.argmax(1) == y).double().mean())


def probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    multilabel: bool = False,
    l2_grid: Sequence[float] = DEFAULT_L2,
    val_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = True,
) -> Dict[str, object]:
    """Choose the L2 strength on a held-out ``val_fraction`` of the training set, refit on all of it, and report
    test accuracy (or mAP for multi-label ``y`` given as multi-hot rows)."""
    xt = torch.as_tensor(x_train, dtype=torch.float64)
    mean, std = xt.mean(0), xt.std(0).clamp_min(1e-8)
    norm = lambda a: (torch.as_tensor(a, dtype=torch.float64) - mean) / std  # noqa: E731
    xt, xs = norm(x_train), norm(x_test)
    yt = torch.as_tensor(y_train, dtype=torch.float64 if multilabel else torch.long)
    ys = torch.as_tensor(y_test, dtype=torch.float64 if multilabel else torch.long)
    perm = torch.randperm(len(xt), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(val_fraction * len(xt))))
    val, fit = perm[:n_val], perm[n_val:]
    scores = {}
    bar = show_progress(total=len(l2_grid) + 1, desc="probe", unit="fit", show=progress)
    for l2 in l2_grid:
        w, b = fit_logistic(xt[fit], yt[fit], l2, multilabel)
        scores[l2] = _score(xt[val], yt[val], w, b, multilabel)
        bar.update(1)
        bar.set_postfix(l2=l2, val=f"{scores[l2]:.4f}")
    best = max(l2_grid, key=lambda l2: (scores[l2], l2))  # ties: the stronger regularisation
    w, b = fit_logistic(xt, yt, best, multilabel)
    bar.update(1)
    bar.close()
    metric = "test_mAP" if multilabel else "test_accuracy"
    return {
        metric: _score(xs, ys, w, b, multilabel),
        "l2": best,
        "val_scores": scores,
        "train_size": len(xt),
        "test_size": len(xs),
        "mean": mean,
        "std": std,
        "weight": w,
        "bias": b,
    }


def load_features(feature_dir: Path, data: LabelledVideos) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Per-video features (the mean over clips) for every labelled video with features in ``feature_dir`` (any
    format ``r21d-zoo extract`` writes), matched by file name without extension (extract keeps input sub-folders)."""
    store = FeatureStore(feature_dir)
    index = store.by_stem()
    xs, ys, missing = [], [], []
    for sample in show_progress(data.samples, desc=f"probe: read {feature_dir}", unit="video"):
        name = index.get(Path(sample.path).stem)
        if name is None:
            missing.append(sample.path)
            continue
        feats = store.read(name).features.astype(np.float32)
        xs.append(feats.reshape(len(feats), -1).mean(0))
        if data.multilabel:
            row = np.zeros(len(data.classes))
            row[list(sample.labels)] = 1
            ys.append(row)
        else:
            ys.append(sample.labels[0])
    if missing:
        _logger.warning("%d labelled videos have no features in %s (e.g. %s)", len(missing), feature_dir, missing[0])
    if not xs:
        raise FileNotFoundError(f"no feature files in {feature_dir} match the labelled videos; run r21d-zoo extract")
    return np.stack(xs), np.asarray(ys), missing


def run_probe(
    train_features: Path,
    train: LabelledVideos,
    test_features: Path,
    test: LabelledVideos,
    l2_grid: Optional[Sequence[float]] = None,
) -> Dict[str, object]:
    x_tr, y_tr, miss_tr = load_features(train_features, train)
    x_te, y_te, miss_te = load_features(test_features, test)
    result = probe(x_tr, y_tr, x_te, y_te, train.multilabel, l2_grid or DEFAULT_L2)
    summary = {k: v for k, v in result.items() if k not in ("mean", "std", "weight", "bias")}
    summary.update(missing_train=miss_tr, missing_test=miss_te, classes=train.classes)
    return summary


def run(cfg: ProbeJobConfig) -> int:
    train = cfg.labels.read(cfg.train)
    test = cfg.labels.read(cfg.test, classes=train.classes, subset="test")
    summary = run_probe(Path(cfg.train_features), train, Path(cfg.test_features or cfg.train_features), test)
    print(json.dumps(summary, default=str))
    return 0
