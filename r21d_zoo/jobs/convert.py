"""``r21d-zoo convert``: a released file (VMZ caffe2 ``.pkl``, or a PyTorch port's ``.pth``: ig65m-pytorch, VMZ
``vmz``, torchvision) to ``DIR/model.safetensors`` + ``config.json`` + model card, loadable with
``create_model("local-dir:DIR")``.

NAME is a registry tag (its metadata, class count and architecture args are used and checked) or a bare architecture
(class count, input channels and, for R2D, clip length are read from the file). Pickles are read with the restricted
unpickler (numpy arrays only), ``.pth`` files with ``torch.load(weights_only=True)``; the load is strict.
"""

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from ..deploy import save_pretrained
from ..models import (
    WeightsError,
    create_model,
    get_pretrained_cfg,
    read_state_dict,
    resolve_model_name,
    split_model_name_tag,
)
from ..models._caffe2 import caffe2_to_state_dict, class_count, load_caffe2_pickle, visual_tower
from ..models._hub import sha256_file
from ..deploy import export
from .common import ModelSource, clip_field, writable_dir, writable_file

_logger = logging.getLogger("r21d_zoo.progress")


def build_target(name: str, num_classes: int, source: str, **model_kwargs: Any) -> nn.Module:
    """The model a file converts into. A tag brings its metadata; a bare architecture gets none but provenance."""
    _, tag = split_model_name_tag(resolve_model_name(name))
    overlay: Dict[str, Any] = dict(notes=f"Converted from {os.path.basename(source)} (sha256 {sha256_file(source)}).")
    if not tag:
        overlay.update(
            tag=None,
            url=None,
            mirrors=(),
            metrics=[],
            hash_prefix=None,
            source_file=os.path.basename(source),
            num_classes=num_classes,
            label_set="kinetics400" if num_classes == 400 else None,
        )
    return create_model(name, num_classes=num_classes, pretrained_cfg_overlay=overlay, **model_kwargs)


def fixed_clip(model: nn.Module, seed: int = 0) -> torch.Tensor:
    """A deterministic normalised clip of the weight's input size (for logit comparisons across machines)."""
    c, t, h, w = model.pretrained_cfg["input_size"]
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, model.stem[0].in_channels, t, h, w, generator=g)


def verify(model: nn.Module, out_dir: Optional[str] = None) -> Dict[str, Any]:
    """Run the fixed clip; record logits and top-5 (``verify.json`` in ``out_dir``) for comparison with the source."""
    model.eval()
    with torch.inference_mode():
        logits = model(fixed_clip(model))[0].double()
    top = logits.softmax(-1).topk(min(5, logits.numel()))
    report = dict(
        input="torch.randn(seed=0) of the weight's input size",
        input_size=model.pretrained_cfg["input_size"],
        top5=top.indices.tolist(),
        top5_prob=[round(p, 6) for p in top.values.tolist()],
        logits_mean=float(logits.mean()),
        logits_std=float(logits.std()),
        logits_first10=[round(v, 6) for v in logits[:10].tolist()],
    )
    if out_dir:
        Path(out_dir, "verify.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def save_converted(
    model: nn.Module, state_dict: Dict[str, torch.Tensor], out_dir: str, run_verify: bool = False
) -> str:
    model.load_state_dict(state_dict, strict=True)
    save_pretrained(model, out_dir)
    _logger.info("convert: wrote %s", out_dir)
    if run_verify:
        print(json.dumps(verify(model, out_dir), indent=2))
    return out_dir


def convert_caffe2(pkl: str, name: str, out: str, run_verify: bool = False) -> str:
    start = time.perf_counter()
    _logger.info("convert: reading %s (%.0f MB)", pkl, os.path.getsize(pkl) / 2**20)
    blobs = load_caffe2_pickle(pkl)
    _logger.info("convert: %d blobs read in %.1f s; mapping them to %s", len(blobs), time.perf_counter() - start, name)
    visual = visual_tower(blobs)
    name = resolve_model_name(name)
    arch, tag = split_model_name_tag(name)
    expected = get_pretrained_cfg(name).num_classes if tag else None
    num_classes = class_count(visual) or 0
    stem = visual.get("conv1_middle_w", visual.get("conv1_w"))
    kwargs = dict(in_chans=int(stem.shape[1])) if stem is not None else {}
    if arch.startswith("r2d") and "conv1_w" in visual:
        kwargs["num_frames"] = int(visual["conv1_w"].shape[2])
    model = build_target(name, expected if expected is not None else num_classes, pkl, **kwargs)
    state_dict = caffe2_to_state_dict(blobs, model, num_classes=expected)
    _logger.info("convert: %d tensors mapped; writing %s", len(state_dict), out)
    return save_converted(model, state_dict, out, run_verify)


def convert_torch(pth: str, name: str, out: str, run_verify: bool = False) -> str:
    _logger.info("convert: reading %s (%.0f MB)", pth, os.path.getsize(pth) / 2**20)
    state_dict = read_state_dict(pth)
    name = resolve_model_name(name)
    _, tag = split_model_name_tag(name)
    if "fc.weight" not in state_dict:
        raise WeightsError(f"{pth} has no fc.weight: not a VideoResNet state dict")
    num_classes = int(state_dict["fc.weight"].shape[0])
    if tag and num_classes != get_pretrained_cfg(name).num_classes:
        raise WeightsError(f"{pth} has {num_classes} classes but {name} has {get_pretrained_cfg(name).num_classes}")
    model = build_target(name, num_classes, pth, in_chans=int(state_dict["stem.0.weight"].shape[1]))
    return save_converted(model, state_dict, out, run_verify)


@dataclass
class ExportConfig:
    """Export a model to ONNX (.onnx) or torch.export (.pt2), with a dynamic batch axis and BatchNorm folded."""

    out: str = field(metadata=dict(flag=("-o", "--out"), help="output file: .onnx or .pt2"))
    model: ModelSource = field(
        default_factory=ModelSource, metadata=dict(overrides=dict(name=dict(positional=True, metavar="MODEL")))
    )
    clip: Dict[str, Any] = clip_field(help="the graph's clip: --num-frames and --crop-size set its fixed T, H, W")
    opset: int = field(default=18, metadata=dict(help="ONNX opset"))
    fold_bn: bool = field(default=True, metadata=dict(help="fold BatchNorm into the convolutions"))


def run_export(cfg: ExportConfig) -> int:
    writable_file(cfg.out, "-o")
    model = cfg.model.create()
    clip = cfg.clip
    print(export(model, cfg.out, clip.get("num_frames"), clip.get("crop_size"), cfg.fold_bn, cfg.opset))
    return 0


@dataclass
class ConvertConfig:
    """Convert a released file (caffe2 .pkl, or a PyTorch port's .pth) into a model folder."""

    source: str = field(metadata=dict(positional=True, help="caffe2 .pkl (VMZ) or .pth/.pt (PyTorch ports)"))
    model: str = field(metadata=dict(help="registry tag (arch.tag) or architecture"))
    out: str = field(metadata=dict(flag=("-o", "--out"), help="output directory"))
    verify: bool = field(default=False, metadata=dict(help="run a fixed clip and write verify.json"))


def run(cfg: ConvertConfig) -> int:
    writable_dir(cfg.out)
    convert = convert_caffe2 if cfg.source.lower().endswith(".pkl") else convert_torch
    print(convert(cfg.source, cfg.model, cfg.out, cfg.verify))
    return 0
