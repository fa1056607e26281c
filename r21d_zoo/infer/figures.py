"""The pictures ``evaluate`` writes beside its results: the confusion matrix and per-class accuracy, readable at
hundreds of classes (classes sorted by accuracy, tick labels only where they fit, the top confusions listed)."""

from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from .._io import atomic_write

LABELLED_TICKS = 60  # classes up to which every class is named on the matrix's axes


def top_confusions(confusion: np.ndarray, classes: List[str], n: int = 20) -> List[Dict[str, Any]]:
    """The ``n`` largest off-diagonal counts: which true class went to which predicted one, how often, and the share
    of the true class's videos that it is."""
    off = np.array(confusion, dtype=np.int64)
    np.fill_diagonal(off, 0)
    support = off.sum(1) + np.diag(np.asarray(confusion))
    order = np.argsort(-off, axis=None, kind="stable")[:n]
    rows = [np.unravel_index(i, off.shape) for i in order]
    return [
        dict(true=classes[t], predicted=classes[p], count=int(off[t, p]), share=float(off[t, p] / support[t]))
        for t, p in rows
        if off[t, p] > 0
    ]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    _pyplot().close(fig)
    return path


def plot_confusion(confusion: np.ndarray, classes: List[str], path: Path, title: str = "") -> Path:
    """The confusion matrix as shares of each true class (rows), classes ordered by recall (best first), with the
    top confusions listed beside it."""
    plt = _pyplot()
    counts = np.asarray(confusion, dtype=np.float64)
    support = counts.sum(1, keepdims=True)
    shares = np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)
    order = np.argsort(-np.diag(shares), kind="stable")
    k = len(classes)
    side = min(24.0, max(5.0, 0.18 * k))
    fig, (ax, text) = plt.subplots(1, 2, figsize=(side + 5, side), gridspec_kw=dict(width_ratios=[side, 5]))
    image = ax.imshow(shares[np.ix_(order, order)], cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of the true class")
    if k <= LABELLED_TICKS:
        names = [classes[i] for i in order]
        ax.set_xticks(range(k), names, rotation=90, fontsize="small")
        ax.set_yticks(range(k), names, fontsize="small")
    ax.set(xlabel="predicted (classes by recall)", ylabel="true", title=title or f"confusion matrix, {k} classes")
    confused = top_confusions(counts, classes)
    lines = [f"{c['true']} -> {c['predicted']}: {c['count']} ({c['share']:.0%})" for c in confused]
    text.axis("off")
    text.text(0, 1, "top confusions\n\n" + ("\n".join(lines) or "none"), va="top", family="monospace", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_per_class(scores: Dict[str, Optional[float]], path: Path, metric: str = "accuracy") -> Path:
    """One horizontal bar per class, sorted best first (classes with no score, e.g. no videos, left out)."""
    plt = _pyplot()
    ranked = sorted(((v, c) for c, v in scores.items() if v is not None), key=lambda x: (-x[0], x[1]))
    k = max(1, len(ranked))
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.16 * k + 1)))
    ax.barh(range(len(ranked)), [v for v, _ in ranked], color="tab:blue")
    ax.set_yticks(range(len(ranked)), [c for _, c in ranked], fontsize=7 if k > LABELLED_TICKS else "small")
    ax.invert_yaxis()
    mean = float(np.mean([v for v, _ in ranked])) if ranked else float("nan")
    ax.axvline(mean, color="grey", linestyle=":", linewidth=1)
    ax.set(xlim=(0, 1), xlabel=metric, title=f"per-class {metric}, {len(ranked)} classes (mean {mean:.3f})")
    ax.set_ylim(len(ranked) - 0.5, -0.5)
    fig.tight_layout()
    return _save(fig, path)


def write_evaluation_figures(metrics: Dict[str, Any], output: Path) -> List[Path]:
    """``OUTPUT.confusion.png`` and ``OUTPUT.per_class.png`` beside ``--output OUTPUT.json`` (single-label), or the
    per-class AP chart (multi-label); adds ``top_confusions`` to ``metrics``."""
    stem = output.with_suffix("")
    if "per_class_ap" in metrics:
        return [plot_per_class(metrics["per_class_ap"], Path(f"{stem}.per_class.png"), "AP")]
    if "confusion_matrix" not in metrics:
        return []
    confusion, classes = np.array(metrics["confusion_matrix"]), metrics["classes"]
    metrics["top_confusions"] = top_confusions(confusion, classes)
    recall = {c: r["recall"] for c, r in metrics["per_class"].items()}
    return [
        plot_confusion(confusion, classes, Path(f"{stem}.confusion.png")),
        plot_per_class(recall, Path(f"{stem}.per_class.png")),
    ]
