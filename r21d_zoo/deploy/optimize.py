"""Inference optimisations behind one switch: :func:`optimize_for_inference`, and the runtime vocabulary every
inference job shares (``--runtime``, :data:`RUNTIMES`): ``eager`` (the model as it is), ``torch`` (the steps below),
``onnxruntime`` (the model's own ONNX export run by onnxruntime, :mod:`r21d_zoo.deploy.onnx_runtime`; float32 or int8)
and ``auto``. The jobs' ``auto`` (their default) measures, as :mod:`r21d_zoo.deploy.choice` says; here, with no clip
shape to time, ``auto`` is a rule: onnxruntime for int8 (the only runtime that has it), torch otherwise. The rule comes
from ``bench/bench_runtimes.py``: on the 2-core AVX-512 CPU it was measured on, the TorchScript path and onnxruntime
ran float32 R(2+1)D-18/34 model-only within run-to-run noise of each other (TorchScript 0.84-1.13x ORT run by hand,
onnxruntime 0.91-1.07x over two runs); bf16 autocast runs in torch (0.44-0.55x float32 there), int8 on onnxruntime
(0.27-0.31x).

Each step keeps outputs within a stated tolerance of the eager float32 model (``tests/test_optimize.py``):

- BatchNorm folded into the preceding conv (exact up to float rounding: max |diff| < 1e-4 on logits);
- channels_last_3d memory format (same math, different kernels);
- on CPU, TorchScript freezing + ``torch.jit.optimize_for_inference`` (prepacked oneDNN convs);
- ``torch.compile`` (inductor; needs a C++ compiler on CPU, first call compiles);
- bf16/fp16 autocast (``amp``, the vocabulary of :mod:`r21d_zoo.deploy.placement`: by default bf16 on GPU);
- ``cudnn.benchmark`` on GPU;
- with ``runtime="onnxruntime"``: the same outputs (max |diff| < 1e-4) from onnxruntime, or, with ``amp="int8"`` and
  calibration clips, static int8 quantization, whose agreement with float32 the caller measures (``extract`` does).
"""

import copy
import logging
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .batchnorm import fold_batchnorm
from .onnx_runtime import EXTRA_HINT, OrtGraph, onnxruntime_available, ort_graph
from .placement import INT8, Placement, amp_dtype

_logger = logging.getLogger(__name__)

RuntimeName = Literal["eager", "torch", "onnxruntime", "auto"]
from .._options import RUNTIME_HELP as RUNTIME_HELP, RUNTIMES as RUNTIMES


def resolve_runtime(runtime: str, device: Union[str, torch.device], amp: Optional[str] = "auto") -> str:
    """What ``runtime`` means for a model on ``device`` at precision ``amp``: ``eager``, ``torch`` or
    ``onnxruntime`` (``auto`` resolved by the rule in the module docstring). Impossible combinations are errors."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    cpu = torch.device(device).type == "cpu"
    int8 = amp == INT8
    if runtime == "auto":
        runtime = "onnxruntime" if int8 else "torch"
    if runtime == "onnxruntime":
        if not cpu:
            raise ValueError(f"the onnxruntime runtime runs on the CPU, not on {device}; on a GPU use runtime torch")
        if not int8 and amp_dtype(amp, device) is not None:
            raise ValueError(f"the onnxruntime runtime runs float32 or int8, not {amp}; {amp} runs on runtime torch")
        if not onnxruntime_available():
            raise ValueError(f"the onnxruntime runtime needs onnxruntime, which is not installed; {EXTRA_HINT}")
    if int8 and runtime != "onnxruntime":
        hint = "" if onnxruntime_available() else f"; {EXTRA_HINT}"
        raise ValueError(f"int8 runs on the onnxruntime runtime on the CPU (runtime onnxruntime or auto){hint}")
    return runtime


class _Features(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


class _Intermediates(nn.Module):
    """``forward_intermediates`` with fixed arguments as a module with tensor outputs (final map first, unless
    ``intermediates_only``), for export."""

    def __init__(self, model: nn.Module, indices: Any, stop_early: bool, intermediates_only: bool):
        super().__init__()
        self.model, self.indices = model, indices
        self.stop_early, self.intermediates_only = stop_early, intermediates_only

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        out = self.model.forward_intermediates(
            x, self.indices, stop_early=self.stop_early, intermediates_only=self.intermediates_only
        )
        return tuple(out) if self.intermediates_only else (out[0], *out[1])


def _script_for_inference(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """Trace, freeze and ``torch.jit.optimize_for_inference``: on CPU the convs become prepacked oneDNN (MKLDNN) ops
    that keep activations in oneDNN's blocked layout between layers. The network has no shape-dependent Python
    control flow, so one trace serves every batch size and clip shape."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and TorchScript maintenance-mode notices
        return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(module.eval(), example)))


class InferenceModel(nn.Module):
    """An optimised copy of a video model for inference: same call signatures (``forward``, ``forward_features``,
    ``forward_head``, ``forward_intermediates``), float32 outputs, and the original's ``pretrained_cfg``. With
    ``runtime="onnxruntime"`` each of these calls runs its own cached ONNX graph (``forward_head`` stays in torch)."""

    def __init__(
        self,
        model: nn.Module,
        place: Placement,
        compile: bool,
        torchscript: bool,
        runtime: str = "torch",
        cache_dir: Optional[Path] = None,
        calibration: Optional[torch.Tensor] = None,
    ):
        super().__init__()
        self.model = model
        self.place = place  # device, precision, memory format
        self.torchscript = torchscript
        self.runtime = runtime  # what runs it: "torch" or "onnxruntime"
        self.cache_dir = cache_dir
        self.calibration = calibration
        self._graphs: Dict[Tuple[str, Tuple[int, ...]], OrtGraph] = {}
        self.pretrained_cfg = getattr(model, "pretrained_cfg", None)
        self.feature_info = getattr(model, "feature_info", None)
        self.num_features = getattr(model, "num_features", None)
        self.num_classes = getattr(model, "num_classes", None)
        # on CPU, inductor's freezing prepacks the conv weights for oneDNN; it needs constant weights, which an
        # inference copy has
        options = None if next(model.parameters()).is_cuda else {"freezing": True}
        self._forward = torch.compile(model, options=options) if compile else model
        self._features = torch.compile(_Features(model), options=options) if compile else _Features(model)
        self._scripted: Dict[str, torch.jit.ScriptModule] = {}

    def _ort(
        self, call: str, build: Callable[[], Tuple[nn.Module, Sequence[str]]], x: torch.Tensor
    ) -> Tuple[torch.Tensor, ...]:
        """The outputs of the ONNX graph of ``call`` (what ``build`` makes: the module and its output names) for
        clips shaped like ``x``, exported on first use."""
        shape = tuple(x.shape[1:])
        if (call, shape) not in self._graphs:
            arch = (self.pretrained_cfg or {}).get("architecture") or type(self.model).__name__
            module, outputs = build()
            graph = ort_graph(module, shape, outputs, f"{arch}-{call}", self.cache_dir, self.calibration)
            self._graphs[call, shape] = graph
        return self._graphs[call, shape](x)

    def _run(self, name: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.runtime == "onnxruntime":
            return self._ort(name, lambda: (module, [name]), x)[0]
        x = self.place.prepare(x)
        if self.torchscript:
            if name not in self._scripted:  # traced on first use
                self._scripted[name] = _script_for_inference(module, x)
            module = self._scripted[name]
        with self.place.autocast():
            return module(x).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run("forward", self._forward, x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run("features", self._features, x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        with self.place.autocast():
            return self.model.forward_head(x, pre_logits=pre_logits).float()

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCTHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        if self.runtime == "onnxruntime":
            if output_fmt != "NCTHW":  # checked on every call: a cached graph does not run the model's own check
                raise ValueError(f"output_fmt must be 'NCTHW' (video feature maps), got {output_fmt!r}")

            def build() -> Tuple[nn.Module, List[str]]:
                module = _Intermediates(self.model, indices, stop_early, intermediates_only)
                with torch.no_grad():
                    count = len(module(x[:1]))
                return module, [f"out{i}" for i in range(count)]

            tag = "_".join(map(str, indices if isinstance(indices, (list, tuple)) else [indices]))
            call = f"stages{tag}{'-early' if stop_early else ''}{'-only' if intermediates_only else ''}"
            out = list(self._ort(call, build, x))
            return out if intermediates_only else (out[0], out[1:])
        with self.place.autocast():
            out = self.model.forward_intermediates(
                self.place.prepare(x), indices, norm, stop_early, output_fmt, intermediates_only
            )
        return [t.float() for t in out] if isinstance(out, list) else (out[0].float(), [t.float() for t in out[1]])


def optimize_for_inference(
    model: nn.Module,
    fold_bn: bool = True,
    channels_last: Optional[bool] = None,
    compile: Optional[bool] = None,
    amp: Optional[str] = "auto",
    torchscript: Optional[bool] = None,
    inplace: bool = False,
    runtime: str = "torch",
    calibration: Optional[torch.Tensor] = None,
    cache_dir: Optional[Union[str, Path]] = None,
) -> InferenceModel:
    """An eval-mode copy of ``model`` (or ``model`` itself with ``inplace``) for inference.

    - ``runtime``: ``torch`` (the steps below), ``onnxruntime`` (its ONNX export; ``cache_dir`` keeps the graphs) or
      ``auto`` (see the module docstring); ``amp="int8"`` (onnxruntime) needs ``calibration``: normalised clips
      (N, C, T, H, W) like the ones it will see.
    - ``fold_bn``: BatchNorm folded into the preceding convs.
    - ``compile``: ``torch.compile`` (default: on GPU).
    - ``amp``: ``auto|bf16|fp16|none`` autocast (:mod:`r21d_zoo.deploy.placement`; auto: bf16 on GPU, none on CPU).
    - ``torchscript``: trace + freeze + ``torch.jit.optimize_for_inference`` (oneDNN convs; default: on CPU when
      neither ``compile`` nor ``amp`` is asked for; ``forward_intermediates`` stays eager).
    - ``channels_last``: channels_last_3d (default: on, except under ``torchscript``, which picks its own layout).
    Sets ``cudnn.benchmark`` when the model is on a GPU. ``bench/bench_models.py`` measures what each step buys."""
    device = next(model.parameters()).device
    runtime = resolve_runtime(runtime, device, amp)
    if runtime == "eager":
        raise ValueError("optimize_for_inference makes an optimised copy; runtime eager is the model itself")
    if (amp == INT8) != (calibration is not None):
        raise ValueError("int8 needs calibration clips, and calibration clips are only used by int8")
    model = (model if inplace else copy.deepcopy(model)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if fold_bn:
        fold_batchnorm(model)
    if runtime == "onnxruntime":
        if compile or torchscript:
            raise ValueError("the onnxruntime runtime does not combine with compile or torchscript; pick one")
        cache = Path(cache_dir) if cache_dir else None
        return InferenceModel(model, Placement(device), False, False, runtime, cache, calibration)
    cuda = device.type == "cuda"
    dtype = amp_dtype(amp, device)
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
    return InferenceModel(model, Placement(device, dtype, channels_last), compile, torchscript)
