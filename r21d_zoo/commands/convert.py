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
from typing import Any, Dict, List, Optional, Tuple

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
from ..models import caffe2_to_state_dict, class_count, download_url, load_caffe2_pickle, sha256_file, visual_tower
from ..models import input_channels, write_verification
from ..deploy import export
from .._errors import EXIT_PARTIAL
from .._io import writable_dir, writable_file
from .configs import ConvertConfig as ConvertConfig, ExportConfig as ExportConfig
from .configs import VerifyWeightsConfig as VerifyWeightsConfig

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


def fixed_clip(
    model: nn.Module, seed: int = 0, frames: Optional[int] = None, size: Optional[int] = None
) -> torch.Tensor:
    """A deterministic normalised clip of the weight's input size (for logit comparisons across machines)."""
    c, t, h, w = model.pretrained_cfg["input_size"]
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, input_channels(model), frames or t, size or h, size or w, generator=g)


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
    cfg = get_pretrained_cfg(name)
    first, head = f"{cfg.first_conv}.weight", f"{cfg.classifier}.weight"
    if first not in state_dict:
        raise WeightsError(f"{pth} has no {first}: not a state dict of {name} (nor an mmaction2 CSN one)")
    num_classes = int(state_dict[head].shape[0]) if head in state_dict else 0  # 0: backbone only
    expected = cfg.num_classes if tag else None
    if num_classes and expected is not None and num_classes != expected:
        raise WeightsError(f"{pth} has {num_classes} classes but {name} has {expected}")
    model = build_target(name, num_classes, pth, in_chans=int(state_dict[first].shape[1]))
    return save_converted(model, state_dict, out, run_verify)


def run_export(cfg: ExportConfig) -> int:
    writable_file(cfg.out, "-o")
    model = cfg.model.create()
    clip = cfg.clip
    print(export(model, cfg.out, clip.get("num_frames"), clip.get("crop_size"), cfg.fold_bn, cfg.opset))
    return 0


def run(cfg: ConvertConfig) -> int:
    writable_dir(cfg.out)
    convert = convert_caffe2 if cfg.source.lower().endswith(".pkl") else convert_torch
    print(convert(cfg.source, cfg.model, cfg.out, cfg.verify))
    return 0


# ------------------------------------------------------------------------------------------------------------------
# verify-weights: every source of a tag against the original
# ------------------------------------------------------------------------------------------------------------------


@dataclass
class SourceCheck:
    """One source of a weight tag, fetched, converted and run on the fixed clip."""

    url: str
    role: str  # 'hub copy', 'original' or 'mirror'
    hashed: bool
    head: bool
    status: str = "unavailable"  # 'reference', 'matches', 'differs', 'unavailable'
    detail: str = ""
    outputs: Dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # 'features', 'logits'
    path: Optional[str] = None


def _outputs(model: nn.Module, x: torch.Tensor) -> Dict[str, torch.Tensor]:
    model.eval()
    with torch.inference_mode():
        fmap = model.forward_features(x)
        out = dict(features=model.forward_head(fmap, pre_logits=True).double())
        if model.num_classes:
            out["logits"] = model.forward_head(fmap).double()
    return out


def _compare(a: Dict[str, torch.Tensor], ref: Dict[str, torch.Tensor], rtol: float) -> Tuple[bool, str]:
    """Largest difference relative to the reference's largest magnitude, per output both have; top-5 for logits."""
    ok, parts = True, []
    for key in ("features", "logits"):
        if key not in a or key not in ref:
            continue
        if a[key].shape != ref[key].shape:
            return False, f"{key} shape {tuple(a[key].shape)} vs {tuple(ref[key].shape)}"
        rel = float((a[key] - ref[key]).abs().max() / ref[key].abs().max().clamp_min(1e-12))
        ok &= rel <= rtol
        parts.append(f"{key} max rel diff {rel:.1e}")
        if key == "logits":
            k = min(5, a[key].shape[-1])
            same = torch.equal(a[key].topk(k).indices, ref[key].topk(k).indices)
            ok &= same
            parts.append("same top-5" if same else "different top-5")
    return ok, ", ".join(parts)


def check_sources(
    name: str,
    cache_dir: Optional[str] = None,
    rtol: float = 1e-3,
    frames: Optional[int] = None,
    size: Optional[int] = None,
) -> List[SourceCheck]:
    """Fetch every source of ``name`` (the hub copy, the original, each mirror), convert it, run one fixed clip and
    compare features and logits with the original's (or, when the original cannot be fetched, the first hash-checked
    source's). A mirror without a hash that matches the original is recorded as verified beside its file, which lets
    ``create_model`` use it; one that differs is recorded too, and refused."""
    name = resolve_model_name(name)
    cfg = get_pretrained_cfg(name)
    if not cfg.has_weights:
        raise WeightsError(f"{name} has no released weights to verify")
    sources: List[Optional[Dict[str, Any]]] = [None] if cfg.hf_hub_id else []  # None: the hub copy
    sources += cfg.download_sources()
    checks = [
        SourceCheck(f"hf-hub:{cfg.hf_hub_id}", "hub copy", True, True)
        if s is None
        else SourceCheck(s["url"], "mirror" if s["mirror"] else "original", bool(s["hash_prefix"]), s["head"])
        for s in sources
    ]
    x = None
    for check, src in zip(checks, sources):
        try:
            # each source alone, as the cfg's only one: an unhashed mirror loads here, this being its check
            overlay: Dict[str, Any] = dict(url=None, mirrors=())
            if src is not None:
                check.path = download_url(check.url, src["hash_prefix"], cache_dir=cache_dir)
                overlay.update(hf_hub_id=None, url=check.url, source_format=src["source_format"])
                overlay.update(hash_prefix=src["hash_prefix"])
            kwargs = {} if check.head else dict(num_classes=0)
            model = create_model(name, pretrained=True, cache_dir=cache_dir, pretrained_cfg_overlay=overlay, **kwargs)
        except Exception as e:  # dead link, hash mismatch, a file that does not convert
            check.detail = f"{type(e).__name__}: {str(e).splitlines()[0]}"
            _logger.info("verify-weights: %s: %s", check.url, check.detail)
            continue
        x = fixed_clip(model, frames=frames, size=size) if x is None else x
        check.outputs = _outputs(model, x)
        check.status = "fetched"
        del model
    original = [c for c in checks if c.role == "original" and c.status == "fetched"]
    hashed = [c for c in checks if c.hashed and c.status == "fetched"]
    reference = (original or hashed or [None])[0]
    if reference is None:
        raise WeightsError(
            f"{name}: neither the original nor a hash-checked source could be fetched, nothing to compare"
        )
    reference.status = "reference"
    for check in checks:
        if check.status != "fetched":
            continue
        ok, check.detail = _compare(check.outputs, reference.outputs, rtol)
        check.status = "matches" if ok else "differs"
        if check.role == "mirror" and not check.hashed and check.path:
            if reference.role == "original":
                write_verification(
                    check.path, dict(ok=ok, tag=name, reference=reference.url, rtol=rtol, summary=check.detail)
                )
            else:
                check.detail += " (not recorded as verified: the original could not be fetched)"
    return checks


def run_verify_weights(cfg: VerifyWeightsConfig) -> int:
    checks = check_sources(cfg.name, cfg.cache_dir, cfg.rtol, cfg.frames, cfg.size)
    for c in checks:
        print(f"{c.status:<11}  {c.role:<8}  {'sha256' if c.hashed else 'no hash':<7}  {c.url}")
        if c.detail:
            print(f"{'':<11}  {c.detail}")
    return EXIT_PARTIAL if any(c.status == "differs" for c in checks) else 0
