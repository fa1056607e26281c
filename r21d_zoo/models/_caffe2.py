"""caffe2 ``.pkl`` (VMZ model zoo) -> r21d_zoo state dict, with the anchors' safeguards and a safe unpickler.

File layout: a protocol-2 pickle of ``{'blobs': {name: float32 ndarray}}`` (or the flat dict), written by Python 2
(``encoding='latin1'`` is required). Blob grammar (VMZ's ``c2/lib/models``): a global block counter ``c``
that runs across layers; per block a conv counter ``j``; ``_s/_b/_rm/_riv`` BatchNorm blobs where ``_riv`` is the
running *variance* (copied unchanged); ir-CSN's depthwise conv is ``conv_3`` (no ``conv_2``); audio-visual files
prefix the visual tower with ``v_``.

Safeguards: the class count is read from ``last_out_L{N}``; every blob is used exactly once; every parameter and
buffer is filled exactly once (NaN canary); shapes and dtypes are asserted.
"""

import io
import logging
import pickle
import re
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn


_logger = logging.getLogger(__name__)

# Bump whenever the blob -> state-dict mapping changes: cached conversions of older versions are then rebuilt.
CONVERTER_VERSION = 1

# The only globals a caffe2 blob pickle needs: numpy array reconstruction (NumPy 1 and 2 module paths), and
# ``_codecs.encode``, which protocol-2 pickles written by Python 3 use for raw bytes (a pure function).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}
_IGNORED = re.compile(r"(_momentum$|^model_iter$|^lr$|^optimizer_iteration$|^iter$)")


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for something other than numpy arrays and plain containers; nothing was executed."""


class Caffe2ConversionError(ValueError):
    """The blobs do not match the target architecture (named blob, expected vs found)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to load global {module}.{name}: a caffe2 blob pickle only contains numpy arrays and plain "
            f"containers. This file is not a VMZ caffe2 checkpoint, or it has been tampered with."
        )


def restricted_loads(data: bytes) -> Any:
    return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def load_caffe2_pickle(path: str) -> Dict[str, np.ndarray]:
    """Read a caffe2 blob pickle safely; returns name -> array (``_momentum``/iteration entries dropped, reported)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        obj = restricted_loads(data)
    except UnsafePickleError:
        raise
    except Exception as e:
        raise Caffe2ConversionError(
            f"{path} is not a readable caffe2 pickle ({type(e).__name__}: {e}); the file "
            f"may be truncated: download it again."
        ) from e
    return blobs_from_object(obj, path)


def blobs_from_object(obj: Any, origin: str = "<pickle>") -> Dict[str, np.ndarray]:
    if isinstance(obj, dict) and "blobs" in obj and isinstance(obj["blobs"], dict):
        obj = obj["blobs"]
    if not isinstance(obj, dict):
        raise Caffe2ConversionError(f"{origin}: expected a dict of blobs, found {type(obj).__name__}")
    blobs, ignored = {}, []
    for name, value in obj.items():
        name = name.decode("latin1") if isinstance(name, bytes) else str(name)
        if _IGNORED.search(name) or not isinstance(value, np.ndarray):
            ignored.append(name)
            continue
        blobs[name] = value
    if ignored:
        _logger.warning("%s: ignoring %d non-parameter entries: %s", origin, len(ignored), ", ".join(sorted(ignored)))
    return blobs


# ------------------------------------------------------------------------------------------------------------------
# The explicit blob table. Keys are relative to a block (or the model root for the stem and head); "{c}" is the
# global block counter. An entry names a conv weight ("w") or a BatchNorm ("bn": four blobs).
# ------------------------------------------------------------------------------------------------------------------

Unit = Tuple[str, str, str]  # (module path, kind 'w' | 'bn', blob name)

STEM_TABLE: Dict[str, List[Unit]] = {
    "2plus1d": [
        ("stem.0", "w", "conv1_middle_w"),
        ("stem.1", "bn", "conv1_middle_spatbn_relu"),
        ("stem.3", "w", "conv1_w"),
        ("stem.4", "bn", "conv1_spatbn_relu"),
    ],
    "3d": [("stem.0", "w", "conv1_w"), ("stem.1", "bn", "conv1_spatbn_relu")],
}

BLOCK_TABLE: Dict[Tuple[str, str], List[Unit]] = {
    ("basic", "2plus1d"): [
        ("conv1.0.0", "w", "comp_{c}_conv_1_middle_w"),
        ("conv1.0.1", "bn", "comp_{c}_spatbn_1_middle"),
        ("conv1.0.3", "w", "comp_{c}_conv_1_w"),
        ("conv1.1", "bn", "comp_{c}_spatbn_1"),
        ("conv2.0.0", "w", "comp_{c}_conv_2_middle_w"),
        ("conv2.0.1", "bn", "comp_{c}_spatbn_2_middle"),
        ("conv2.0.3", "w", "comp_{c}_conv_2_w"),
        ("conv2.1", "bn", "comp_{c}_spatbn_2"),
    ],
    ("basic", "3d"): [
        ("conv1.0", "w", "comp_{c}_conv_1_w"),
        ("conv1.1", "bn", "comp_{c}_spatbn_1"),
        ("conv2.0", "w", "comp_{c}_conv_2_w"),
        ("conv2.1", "bn", "comp_{c}_spatbn_2"),
    ],
    ("bottleneck", "2plus1d"): [
        ("conv1.0", "w", "comp_{c}_conv_1_w"),
        ("conv1.1", "bn", "comp_{c}_spatbn_1"),
        ("conv2.0.0", "w", "comp_{c}_conv_2_middle_w"),
        ("conv2.0.1", "bn", "comp_{c}_spatbn_2_middle"),
        ("conv2.0.3", "w", "comp_{c}_conv_2_w"),
        ("conv2.1", "bn", "comp_{c}_spatbn_2"),
        ("conv3.0", "w", "comp_{c}_conv_3_w"),
        ("conv3.1", "bn", "comp_{c}_spatbn_3"),
    ],
    ("bottleneck", "3d"): [
        ("conv1.0", "w", "comp_{c}_conv_1_w"),
        ("conv1.1", "bn", "comp_{c}_spatbn_1"),
        ("conv2.0", "w", "comp_{c}_conv_2_w"),
        ("conv2.1", "bn", "comp_{c}_spatbn_2"),
        ("conv3.0", "w", "comp_{c}_conv_3_w"),
        ("conv3.1", "bn", "comp_{c}_spatbn_3"),
    ],
    ("bottleneck", "ir_csn"): [  # the conv counter jumps by 2 around the depthwise conv: there is no conv_2
        ("conv1.0", "w", "comp_{c}_conv_1_w"),
        ("conv1.1", "bn", "comp_{c}_spatbn_1"),
        ("conv2.0", "w", "comp_{c}_conv_3_w"),
        ("conv2.1", "bn", "comp_{c}_spatbn_3"),
        ("conv3.0", "w", "comp_{c}_conv_4_w"),
        ("conv3.1", "bn", "comp_{c}_spatbn_4"),
    ],
    ("bottleneck", "ip_csn"): [
        ("conv1.0", "w", "comp_{c}_conv_1_w"),
        ("conv1.1", "bn", "comp_{c}_spatbn_1"),
        ("conv2.0.0", "w", "comp_{c}_conv_2_middle_w"),
        ("conv2.0.1", "bn", "comp_{c}_spatbn_2_middle"),
        ("conv2.0.2", "w", "comp_{c}_conv_2_w"),
        ("conv2.1", "bn", "comp_{c}_spatbn_2"),
        ("conv3.0", "w", "comp_{c}_conv_3_w"),
        ("conv3.1", "bn", "comp_{c}_spatbn_3"),
    ],
}

SHORTCUT_TABLE: List[Unit] = [
    ("downsample.0", "w", "shortcut_projection_{c}_w"),
    ("downsample.1", "bn", "shortcut_projection_{c}_spatbn"),
]

BN_FIELDS = (("weight", "_s"), ("bias", "_b"), ("running_mean", "_rm"), ("running_var", "_riv"))


def _conv_family(block: nn.Module) -> str:
    """Which row of BLOCK_TABLE a block uses, read from the structure of its 3x3x3-type conv (2D and 3D convs share
    blob names): (2+1)D is conv-BN-ReLU-conv, ip-CSN conv-BN-depthwise conv, ir-CSN one depthwise conv."""
    conv = block.conv2[0] if hasattr(block, "conv3") else block.conv1[0]
    if isinstance(conv, nn.Sequential):
        return "2plus1d" if len(conv) == 4 else "ip_csn"
    return "ir_csn" if conv.groups > 1 else "3d"


def _is_2plus1d_stem(stem: nn.Module) -> bool:
    return len(stem) > 3 and isinstance(stem[3], nn.Conv3d)


def blob_table(model: nn.Module) -> List[Tuple[str, str]]:
    """Every (state-dict key, blob name) pair for ``model``, except the classifier."""
    pairs: List[Tuple[str, str]] = []

    def add(units: List[Unit], prefix: str, c: int) -> None:
        for path, kind, blob in units:
            blob = blob.format(c=c)
            if kind == "w":
                pairs.append((f"{prefix}{path}.weight", blob))
            else:
                pairs.extend((f"{prefix}{path}.{field}", blob + suffix) for field, suffix in BN_FIELDS)

    add(STEM_TABLE["2plus1d" if _is_2plus1d_stem(model.stem) else "3d"], "", 0)
    c = 0
    for li in range(1, 5):
        for k, block in enumerate(getattr(model, f"layer{li}")):
            kind = "bottleneck" if hasattr(block, "conv3") else "basic"
            add(BLOCK_TABLE[(kind, _conv_family(block))], f"layer{li}.{k}.", c)
            if block.downsample is not None:
                add(SHORTCUT_TABLE, f"layer{li}.{k}.", c)
            c += 1
    return pairs


def visual_tower(blobs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Audio-visual files: keep the ``v_`` (visual) blobs without the prefix; report the rest."""
    if not any(k.startswith("v_") for k in blobs):
        return blobs
    other = sorted(k for k in blobs if not k.startswith("v_"))
    if other:
        _logger.warning(
            "audio-visual file: converting the visual tower (v_ blobs); ignoring %d audio/fusion blobs: %s",
            len(other),
            ", ".join(other),
        )
    return {k[2:]: v for k, v in blobs.items() if k.startswith("v_")}


def class_count(blobs: Dict[str, np.ndarray]) -> Optional[int]:
    """N from the ``last_out_L{N}`` classifier blobs (None for a headless tower)."""
    found = sorted({int(m.group(1)) for k in blobs for m in [re.fullmatch(r"last_out_L(\d+)_[wb]", k)] if m})
    if len(found) > 1:
        raise Caffe2ConversionError(f"several classifiers in the file: {', '.join(f'last_out_L{n}' for n in found)}")
    return found[0] if found else None


def caffe2_to_state_dict(
    blobs: Dict[str, np.ndarray], model: nn.Module, num_classes: Optional[int] = None
) -> Dict[str, torch.Tensor]:
    """Map caffe2 blobs onto ``model``'s state dict; every blob used once, every tensor filled once.

    ``num_classes``: the class count the caller expects (a tag's); a different ``last_out_L{N}`` is an error. The
    classifier keeps the file's shape otherwise, so a caller may drop it to train a new head.
    """
    blobs = dict(visual_tower(blobs))
    own = model.state_dict()
    canary = {
        k: torch.full_like(v, float("nan")) if v.is_floating_point() else torch.zeros_like(v) for k, v in own.items()
    }
    n = class_count(blobs)
    if num_classes is not None and n != num_classes:
        raise Caffe2ConversionError(
            f"classifier blob last_out_L{n}_w has {n} classes, expected {num_classes} (last_out_L{num_classes}_w): "
            f"this file is for another head (IG-65M 32f: 359, IG-65M 8f and Sports-1M: 487, Kinetics: 400)."
        )
    pairs = blob_table(model)
    if n is not None:
        pairs += [("fc.weight", f"last_out_L{n}_w"), ("fc.bias", f"last_out_L{n}_b")]
        canary["fc.weight"] = torch.full((n, model.num_features), float("nan"))
        canary["fc.bias"] = torch.full((n,), float("nan"))
    missing = [blob for _, blob in pairs if blob not in blobs]
    if missing:
        raise Caffe2ConversionError(
            f"missing blob(s) for {type(model).__name__}: {', '.join(missing[:10])}"
            f"{' ...' if len(missing) > 10 else ''}. Wrong architecture for this file?"
        )
    for key, blob in pairs:
        if key not in canary:
            raise Caffe2ConversionError(f"blob {blob} maps to {key}, which the model does not have")
        value = blobs.pop(blob)
        if value.dtype != np.float32:
            raise Caffe2ConversionError(f"blob {blob} has dtype {value.dtype}, expected float32")
        if key == "fc.weight" and value.ndim == 5:  # convolutional prediction head [N, C, 1, 1, 1]
            value = value.reshape(value.shape[:2])
        if tuple(value.shape) != tuple(canary[key].shape):
            raise Caffe2ConversionError(
                f"blob {blob} has shape {tuple(value.shape)} but {key} needs {tuple(canary[key].shape)}"
            )
        if not torch.isnan(canary[key]).all():
            raise Caffe2ConversionError(f"{key} would be filled twice (second time from blob {blob})")
        canary[key] = torch.from_numpy(np.ascontiguousarray(value)).clone()
    if blobs:
        extra = sorted(blobs)
        raise Caffe2ConversionError(
            f"unused blob(s), not part of {type(model).__name__}: {', '.join(extra[:10])}"
            f"{' ...' if len(extra) > 10 else ''}. Wrong architecture for this file?"
        )
    unfilled = [k for k, v in canary.items() if v.is_floating_point() and torch.isnan(v).any()]
    if unfilled:
        raise Caffe2ConversionError(f"parameters left unfilled (NaN canary): {', '.join(unfilled[:10])}")
    return canary
