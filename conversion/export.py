"""Shared tail of every converter: build the target model, load strictly, record provenance, save, verify."""

import argparse
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn as nn

from r21d_zoo.models import create_model, save_pretrained, split_model_name_tag
from r21d_zoo.models._hub import sha256_file
from r21d_zoo.models._registry import resolve_model_name


def build_target(name: str, num_classes: int, source: str, **model_kwargs: Any) -> nn.Module:
    """The model a file converts into. A tag brings its metadata; a bare architecture gets none but provenance."""
    name = resolve_model_name(name)
    _, tag = split_model_name_tag(name)
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


def export(model: nn.Module, state_dict: Dict[str, torch.Tensor], out_dir: str, run_verify: bool = False) -> str:
    model.load_state_dict(state_dict, strict=True)
    save_pretrained(model, out_dir)
    if run_verify:
        print(json.dumps(verify(model, out_dir), indent=2))
    return out_dir


def cli_main(
    doc: str,
    source_flag: str,
    source_help: str,
    convert: Callable[[str, str, str, bool], str],
    argv: Optional[List[str]] = None,
) -> int:
    """The converters' shared command line: --<source> FILE --model NAME --out DIR [--verify]."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(f"--{source_flag}", required=True, help=source_help)
    parser.add_argument("--model", required=True, help="registry tag (arch.tag) or architecture")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--verify", action="store_true", help="run a fixed clip and write verify.json")
    args = parser.parse_args(argv)
    print(convert(getattr(args, source_flag), args.model, args.out, args.verify))
    return 0
