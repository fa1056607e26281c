"""``export``: a model as a deployment graph, the format from the file suffix.

- ``.onnx``: ``torch.onnx.export`` (the dynamo exporter; needs ``onnx`` and ``onnxscript``, run it with
  ``onnxruntime``), opset 18 by default; input ``clips`` (B, C, T, H, W float32, normalised as the model's
  :class:`ClipSpec` says), output ``logits`` (B, num_classes), or pooled features for a headless model.
- ``.pt2``: ``torch.export`` (``torch.export.load(path).module()(clips)``).

The batch axis is dynamic (1 to 1024); T, H and W are fixed at the example clip's size (the weights' frames and crop
size unless given): export one file per clip size. BatchNorm is folded into the convolutions by default. The file is
written atomically.
"""

import contextlib
import copy
import logging
import os
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch
import torch.nn as nn

from ..models import ClipSpec, input_channels
from .batchnorm import fold_batchnorm

FORMATS = (".onnx", ".pt2")
MAX_BATCH = 1024


@contextlib.contextmanager
def quiet(*loggers: str) -> Iterator[None]:
    """Warnings only from these libraries' loggers (the ONNX tools log every pass at INFO), and no Python warnings."""
    levels = {name: logging.getLogger(name).level for name in loggers}
    try:
        for name in loggers:
            logging.getLogger(name).setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def export(
    model: nn.Module,
    path: str,
    num_frames: Optional[int] = None,
    crop_size: Optional[int] = None,
    fold_bn: bool = True,
    opset: int = 18,
) -> str:
    """Export ``model`` to ``path`` (``.onnx`` or ``.pt2``; see the module docstring). Returns the path."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot tell the export format from {path!r}: the file name must end in .onnx or .pt2")
    spec = ClipSpec.from_model(model, num_frames=num_frames, crop_size=crop_size)
    model = copy.deepcopy(getattr(model, "module", model)).eval()
    if fold_bn:
        fold_batchnorm(model)
    shape = (input_channels(model), spec.num_frames, spec.crop_size, spec.crop_size)
    return export_graph(model, shape, path, ["logits"], opset)


def export_graph(
    module: nn.Module, clip_shape: Sequence[int], path: str, output_names: Sequence[str], opset: int = 18
) -> str:
    """Export ``module`` (eval mode, taking one ``clips`` tensor) for clips of ``clip_shape`` (C, T, H, W) with a
    dynamic batch axis to ``path`` (``.onnx`` or ``.pt2``), atomically. Returns the path."""
    suffix = Path(path).suffix.lower()
    example = torch.randn(2, *clip_shape)  # 2: batch 1 would specialise
    batch = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial{os.getpid()}{suffix}")
    try:
        with torch.no_grad(), quiet("onnx_ir", "onnxscript", "torch.onnx"):  # exporter progress notices
            if suffix == ".pt2":
                torch.export.save(torch.export.export(module, (example,), dynamic_shapes=batch), str(tmp))
            else:
                torch.onnx.export(
                    module,
                    (example,),
                    str(tmp),
                    input_names=["clips"],
                    output_names=list(output_names),
                    dynamic_shapes=batch,
                    opset_version=opset,
                    dynamo=True,
                    external_data=False,  # one self-contained file (the largest model is far below protobuf's 2 GB)
                    verbose=False,
                )
        os.replace(tmp, out)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".data")):
            leftover.unlink(missing_ok=True)
    return str(out)
