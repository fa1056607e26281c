"""ONNX Runtime as an inference runtime (``optimize_for_inference(runtime="onnxruntime")``): the project's own ONNX
export (:func:`~r21d_zoo.deploy.exporting.export_graph`, BatchNorm folded, dynamic batch) run by onnxruntime's CPU
provider, with the calling process's torch thread count.

A graph is exported once per model, output, clip shape and setting and kept in a cache folder (``cache_dir``, else
``$TORCH_HOME/hub/r21d_zoo/onnx``), named by a digest of everything that decides its contents: the weights, the
module's structure (its ``repr``: strides, kernels, padding), the output, the clip shape, the opset, the torch version
and, for int8, the quantization settings and the calibration clips. Anything changed is a new file, so a cached graph
is never stale; an unreadable one is exported again.

int8 is onnxruntime's static quantization in QDQ form: int8 weights per output channel, uint8 activations with
MinMax ranges measured on calibration clips (``quant_pre_process`` first, as onnxruntime recommends). On x86 CPUs with
VNNI it runs the convolutions in int8 (``bench/bench_models.py`` measures it).
"""

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..models import state_dict_sha256
from .exporting import export_graph, quiet

_logger = logging.getLogger(__name__)

EXTRA_HINT = "install onnxruntime (pip install 'r21d_zoo[onnxruntime]')"
GRAPH_VERSION = 1  # bump when the export or the quantization recipe changes what a cached file holds
OPSET = 18
INT8_RECIPE = dict(format="QDQ", weights="int8 per channel", activations="uint8 per tensor", calibrate="MinMax")


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def default_cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "r21d_zoo" / "onnx"


def tensor_sha256(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class OrtGraph:
    """One cached ONNX graph in an ``InferenceSession``: float32 clips (B, C, T, H, W) in, its outputs as tensors."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        # no spinning between calls: spinning threads take the cores that decoding workers (and eager runs
        # measured beside them) need; the model alone is as fast without it
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        clips = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return tuple(torch.from_numpy(out) for out in self.session.run(None, {"clips": clips}))


def _quantize(fp32: Path, out: Path, calibration: torch.Tensor, batch: int = 1) -> None:
    """int8 ``out`` from ``fp32``, its activation ranges (min/max, so the same however the clips are batched) measured
    on ``calibration`` clips ``batch`` at a time: one clip at a time took R(2+1)D-18 on 16-frame clips 1.2 GB above
    the export instead of 4.4 GB at 4 (and R(2+1)D-152 on 32-frame clips over 24 GB at 4)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Clips(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[torch.Tensor] = iter(calibration.split(batch))

        def get_next(self) -> Optional[Dict[str, Any]]:
            x = next(self.batches, None)
            return None if x is None else {"clips": x.float().contiguous().numpy()}

    pre = out.with_name(f".{out.stem}.pre{os.getpid()}.onnx")
    tmp = out.with_name(f".{out.stem}.partial{os.getpid()}.onnx")
    try:
        with quiet("onnxruntime"):
            quant_pre_process(str(fp32), str(pre))
            quantize_static(
                str(pre),
                str(tmp),
                Clips(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        os.replace(tmp, out)
    finally:
        for leftover in (pre, tmp, *out.parent.glob(f".{out.stem}.*augmented*")):
            leftover.unlink(missing_ok=True)


def ort_graph(
    module: nn.Module,
    clip_shape: Sequence[int],
    output_names: Sequence[str],
    name: str,
    cache_dir: Optional[Path] = None,
    calibration: Optional[torch.Tensor] = None,
) -> OrtGraph:
    """The cached ONNX graph of ``module`` (eval mode; one clips tensor in, ``output_names`` out) for clips of
    ``clip_shape`` (C, T, H, W), exported (and, with ``calibration`` clips, int8-quantized) when not cached yet.
    ``name`` names what the graph computes (the architecture and the call: ``r2plus1d_18-features``); it starts the
    file name and is part of the key, since wrappers of one model with other arguments share weights and ``repr``."""
    if not onnxruntime_available():
        raise RuntimeError(f"the onnxruntime runtime needs onnxruntime, which is not installed; {EXTRA_HINT}")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    key: Dict[str, Any] = dict(
        version=GRAPH_VERSION,
        name=name,
        weights=state_dict_sha256(module),
        structure=hashlib.sha256(repr(module).encode()).hexdigest(),
        outputs=list(output_names),
        clip_shape=list(clip_shape),
        opset=OPSET,
        torch=torch.__version__.split("+")[0],
    )
    fp32 = cache / f"{name}-{_digest(key)}.onnx"
    path = fp32
    if calibration is not None:
        key.update(int8=INT8_RECIPE, calibration=tensor_sha256(calibration), calibration_shape=list(calibration.shape))
        path = cache / f"{name}-int8-{_digest(key)}.onnx"
    for attempt in (0, 1):
        if not path.exists():
            if not fp32.exists():
                _logger.info("exporting %s to ONNX (%s)", name, fp32)
                export_graph(module, clip_shape, str(fp32), output_names, OPSET)
            if path != fp32:
                _logger.info("quantizing %s to int8 on %d calibration clips (%s)", name, len(calibration), path)
                _quantize(fp32, path, calibration)
        try:
            return OrtGraph(path)
        except Exception as e:  # a damaged cache file (onnxruntime raises its own exception types)
            if attempt:
                raise
            _logger.warning("unreadable cached graph %s (%s): exporting it again", path, e)
            for p in {fp32, path}:
                p.unlink(missing_ok=True)
    raise AssertionError("unreachable")


def _digest(key: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
