"""Full-batch logistic regression with L-BFGS: the linear probe's fit (every optimizer step of the package lives in
this layer)."""

import torch
import torch.nn.functional as F


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float, multilabel: bool = False, max_iter: int = 500):
    """Minimise mean log-loss + ``l2``/2 * ||W||^2 (bias not penalised) with L-BFGS. Returns (W, b).
    ``l2`` equals scikit-learn's ``1 / (C * n)``."""
    n, d = x.shape
    k = y.shape[1] if multilabel else int(y.max()) + 1
    w = torch.zeros(d, k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        logits = x @ w + b
        loss = F.binary_cross_entropy_with_logits(logits, y) * k if multilabel else F.cross_entropy(logits, y)
        loss = loss + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()
