"""Precision and memory format, with one vocabulary for every command (``--amp``, ``--channels-last``), the training
loop, extraction, evaluation and :func:`~r21d_zoo.optimize_for_inference`:

- ``auto`` (the default): bf16 autocast on a GPU (fp16 on a GPU without bf16), float32 on the CPU;
- ``bf16`` / ``fp16``: autocast to that dtype on any device (on the CPU it changes the numbers at the 1e-2 level; on
  CPUs with AVX512-BF16 or AMX, bf16 inference takes about half float32's time, elsewhere it is rarely faster; fp16
  training uses a loss scaler);
- ``none``: float32;
- ``int8`` (inference only: ``extract``, ``evaluate``, ``predict``, ``demo``): static int8 quantization on the
  onnxruntime runtime (:mod:`r21d_zoo.deploy.onnx_runtime`), calibrated on the user's clips.

``channels_last`` (channels_last_3d memory format): None means on a GPU, and for inference on the CPU only for models
with grouped 3-D convolutions (CSN), see :func:`use_channels_last`.
"""

import contextlib
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.nn as nn

from .._options import AMP_CHOICES as AMP_CHOICES, AMP_HELP as AMP_HELP, CHANNELS_LAST_HELP as CHANNELS_LAST_HELP
from .._options import INFERENCE_AMP_CHOICES as INFERENCE_AMP_CHOICES, INFERENCE_AMP_HELP as INFERENCE_AMP_HELP
from .._options import INT8 as INT8, Amp as Amp, InferenceAmp as InferenceAmp

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: Optional[str], device: Union[str, torch.device]) -> Optional[torch.dtype]:
    """The autocast dtype ``amp`` means on ``device`` (None: float32). ``None`` is ``"none"``."""
    amp = "none" if amp is None else amp
    if amp == INT8:
        raise ValueError("int8 is not an autocast dtype: it is an inference precision of the onnxruntime runtime")
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {list(AMP_CHOICES)}, got {amp!r}")
    device = torch.device(device)
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return AMP_DTYPES.get(amp)


def use_channels_last(
    device: Union[str, torch.device], channels_last: Optional[bool] = None, model: Optional[nn.Module] = None
) -> bool:
    """channels_last_3d as asked; by default on a GPU, and on the CPU for a ``model`` with grouped 3-D convolutions
    (CSN): oneDNN runs depthwise Conv3d 4-6x faster in that layout than in NCDHW, whole ir-CSN-152 in 0.63-0.74x of
    its time on the 2-core machine of ``bench/`` (outputs within 1e-6), while dense models gain little."""
    if channels_last is not None:
        return bool(channels_last)
    if torch.device(device).type == "cuda":
        return True
    return model is not None and any(isinstance(m, nn.Conv3d) and m.groups > 1 for m in model.modules())


@dataclass(frozen=True)
class Placement:
    """Where and how a model runs: the device, the autocast dtype (None: float32) and the memory format."""

    device: torch.device
    dtype: Optional[torch.dtype] = None
    channels_last: bool = False

    @classmethod
    def create(
        cls,
        device: Union[str, torch.device],
        amp: Optional[str] = "auto",
        channels_last: Optional[bool] = None,
        model: Optional[nn.Module] = None,
    ) -> "Placement":
        """``channels_last=None`` decides by device and, given the ``model``, by its layers (see
        :func:`use_channels_last`)."""
        device = torch.device(device)
        return cls(device, amp_dtype(amp, device), use_channels_last(device, channels_last, model))

    def autocast(self) -> Any:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A model input in this runtime's memory format."""
        return x.contiguous(memory_format=torch.channels_last_3d) if self.channels_last else x

    def place(self, model: nn.Module) -> nn.Module:
        """``model`` moved to the device, in the memory format."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last_3d) if self.channels_last else model

    def grad_scaler(self) -> torch.amp.GradScaler:
        """The loss scaler fp16 training needs (disabled otherwise)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
