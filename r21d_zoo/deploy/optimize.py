"""Inference optimisations behind one switch: :func:`optimize_for_inference`.

Each step keeps outputs within a stated tolerance of the eager float32 model (``tests/test_optimize.py``):

- BatchNorm folded into the preceding conv (exact up to float rounding: max |diff| < 1e-4 on logits);
- channels_last_3d memory format (same math, different kernels);
- on CPU, TorchScript freezing + ``torch.jit.optimize_for_inference`` (prepacked oneDNN convs);
- ``torch.compile`` (inductor; needs a C++ compiler on CPU, first call compiles);
- bf16/fp16 autocast (``amp``, the vocabulary of :mod:`r21d_zoo.deploy.runtime`: by default bf16 on GPU);
- ``cudnn.benchmark`` on GPU.
"""

import copy
import logging
import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .runtime import Runtime, amp_dtype

_logger = logging.getLogger(__name__)

def _last_conv(module: nn.Module) -> Optional[Tuple[nn.Sequential, int]]:
    """The (container, index) of the conv that produces ``module``'s output, if its output is a conv's output."""
    if isinstance(module, nn.Sequential) and len(module):
        last = module[len(module) - 1]
        if isinstance(last, nn.Conv3d):
            return module, len(module) - 1
        return _last_conv(last)
    return None


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm3d that directly follows a Conv3d (possibly the last conv of a nested
    ``Sequential``, e.g. a (2+1)D conv) into that conv, in place. Returns the number folded. The model must be in
    eval mode; the folded model has conv biases and ``Identity`` where the BNs were (a different state dict)."""
    if model.training:
        raise ValueError("fold BatchNorm only in eval mode (call model.eval() first)")
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(1, len(seq)):
            bn = seq[i]
            if not isinstance(bn, nn.BatchNorm3d):
                continue
            prev = seq[i - 1]
            target = (seq, i - 1) if isinstance(prev, nn.Conv3d) else _last_conv(prev)
            if target is None:
                continue
            container, j = target
            container[j] = fuse_conv_bn_eval(container[j], bn)
            seq[i] = nn.Identity()
            folded += 1
    return folded


class _Features(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def _script_for_inference(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """Trace, freeze and ``torch.jit.optimize_for_inference``: on CPU the convs become prepacked oneDNN (MKLDNN) ops
    that keep activations in oneDNN's blocked layout between layers. The network has no shape-dependent Python
    control flow, so one trace serves every batch size and clip shape."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and TorchScript maintenance-mode notices
        return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(module.eval(), example)))


class InferenceModel(nn.Module):
    """An optimised copy of a video model for inference: same call signatures (``forward``, ``forward_features``,
    ``forward_head``, ``forward_intermediates``), float32 outputs, and the original's ``pretrained_cfg``."""

    def __init__(
        self, model: nn.Module, runtime: Runtime, compile: bool, torchscript: bool
    ):
        super().__init__()
        self.model = model
        self.runtime = runtime
        self.torchscript = torchscript
        self.pretrained_cfg = getattr(model, "pretrained_cfg", None)
        self.feature_info = getattr(model, "feature_info", None)
        self.num_features = getattr(model, "num_features", None)
        # on CPU, inductor's freezing prepacks the conv weights for oneDNN; it needs constant weights, which an
        # inference copy has
        options = None if next(model.parameters()).is_cuda else {"freezing": True}
        self._forward = torch.compile(model, options=options) if compile else model
        self._features = torch.compile(_Features(model), options=options) if compile else _Features(model)
        self._scripted: Dict[str, torch.jit.ScriptModule] = {}

    def _run(self, name: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        x = self.runtime.prepare(x)
        if self.torchscript:
            if name not in self._scripted:  # traced on first use
                self._scripted[name] = _script_for_inference(module, x)
            module = self._scripted[name]
        with self.runtime.autocast():
            return module(x).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run("forward", self._forward, x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run("features", self._features, x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        with self.runtime.autocast():
            return self.model.forward_head(x, pre_logits=pre_logits).float()

    def forward_intermediates(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> List[torch.Tensor]:
        with self.runtime.autocast():
            out = self.model.forward_intermediates(self.runtime.prepare(x), *args, **kwargs)
        return [t.float() for t in out] if isinstance(out, list) else (out[0].float(), [t.float() for t in out[1]])


def optimize_for_inference(
    model: nn.Module,
    fold_bn: bool = True,
    channels_last: Optional[bool] = None,
    compile: Optional[bool] = None,
    amp: Optional[str] = "auto",
    torchscript: Optional[bool] = None,
    inplace: bool = False,
) -> InferenceModel:
    """An eval-mode copy of ``model`` (or ``model`` itself with ``inplace``) for inference.

    - ``fold_bn``: BatchNorm folded into the preceding convs.
    - ``compile``: ``torch.compile`` (default: on GPU).
    - ``amp``: ``auto|bf16|fp16|none`` autocast (:mod:`r21d_zoo.deploy.runtime`; auto: bf16 on GPU, none on CPU).
    - ``torchscript``: trace + freeze + ``torch.jit.optimize_for_inference`` (oneDNN convs; default: on CPU when
      neither ``compile`` nor ``amp`` is asked for; ``forward_intermediates`` stays eager).
    - ``channels_last``: channels_last_3d (default: on, except under ``torchscript``, which picks its own layout).
    Sets ``cudnn.benchmark`` when the model is on a GPU. ``bench/bench_models.py`` measures what each step buys."""
    model = (model if inplace else copy.deepcopy(model)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    dtype = amp_dtype(amp, device)
    if fold_bn:
        fold_batchnorm(model)
    if compile is None:
        compile = cuda
    if torchscript is None:
        torchscript = not cuda and not compile and dtype is None
    if torchscript and (compile or dtype is not None):
        raise ValueError("torchscript does not combine with compile or amp; pick one")
    channels_last = not torchscript if channels_last is None else channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    if cuda:
        torch.backends.cudnn.benchmark = True
    return InferenceModel(model, Runtime(device, dtype, channels_last), compile, torchscript)
