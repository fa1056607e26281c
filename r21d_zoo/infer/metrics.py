"""Classification metrics, one implementation for every reader of predictions (evaluation, the linear probe):
top-k hits, average precision per class, the confusion matrix and the per-class report."""

from typing import Dict, List, Optional

import torch


def topk_correct(probs: torch.Tensor, target: torch.Tensor, k: int) -> int:
    """How many rows have their target among their ``k`` highest scores."""
    k = min(k, probs.shape[-1])
    return int((probs.topk(k, -1).indices == target.unsqueeze(-1)).any(-1).sum())


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-class AP (area under the precision-recall steps, as sklearn's ``average_precision_score``); NaN for
    classes with no positives."""
    order = scores.argsort(0, descending=True)
    t = targets.gather(0, order).float()
    hits = t.cumsum(0)
    precision = hits / torch.arange(1, len(t) + 1, device=t.device).unsqueeze(1)
    positives = t.sum(0)
    return (precision * t).sum(0) / positives.where(positives > 0, torch.tensor(float("nan")))


def confusion_matrix(target: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[true class, predicted class]`` counts."""
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    confusion.index_put_((target, predicted), torch.ones_like(target), accumulate=True)
    return confusion


def per_class_report(confusion: torch.Tensor, classes: List[str]) -> Dict[str, Dict[str, Optional[float]]]:
    """Support, recall and precision of every class (None where undefined)."""
    report: Dict[str, Dict[str, Optional[float]]] = {}
    for c, name in enumerate(classes):
        support, predicted, hit = int(confusion[c].sum()), int(confusion[:, c].sum()), int(confusion[c, c])
        report[name] = dict(
            support=support, recall=hit / support if support else None, precision=hit / predicted if predicted else None
        )
    return report
