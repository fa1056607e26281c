"""``r21d-zoo list`` and ``r21d-zoo info``: what the registry holds, rendered from it (so it works from a wheel)."""

import json
import sys

from ..deploy.cards import model_stats, registry_config, render_model_card
from ..models import PretrainedCfg, get_pretrained_cfg, list_aliases, list_models, list_pretrained, metric_value
from ..models import resolve_model_name
from .configs import ListConfig as ListConfig, InfoConfig as InfoConfig


def run_list(cfg: ListConfig) -> int:
    pattern = cfg.filter or ""
    if pattern and not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"  # a bare word matches anywhere in the name
    names = list_pretrained(pattern) if cfg.pretrained else list_models(pattern)
    for name in names:
        print(name)
    if not names:
        kind = "pretrained weight" if cfg.pretrained else "architecture"
        every = "r21d-zoo list --pretrained" if cfg.pretrained else "r21d-zoo list"
        print(f"no {kind} matches {cfg.filter!r}; `{every}` shows them all", file=sys.stderr)
    return 0


def _class_names(w: PretrainedCfg) -> str:
    if not w.has_weights:
        return "no weights, so no class names: a new head to train"
    return "Kinetics-400 names" if w.label_set else "no published names"


def _licence(w: PretrainedCfg) -> str:
    if w.license == "other":
        return f"other: {w.license_name} ({w.license_link})"
    return w.license or "none recorded"


def run_info(cfg: InfoConfig) -> int:
    name = resolve_model_name(cfg.name)
    config = registry_config(name)
    w = get_pretrained_cfg(name)
    if cfg.json:
        print(json.dumps(config, indent=2, sort_keys=True, default=str))
        return 0
    if cfg.card:
        print(render_model_card(config), end="")
        return 0
    params, gmacs = model_stats(config)
    c, t, h, _ = w.input_size
    clip = w.clip
    aliases = [a for a, target in list_aliases().items() if target == w.name]
    top1, top5 = metric_value(w, "video_top1"), metric_value(w, "video_top5")
    rows = [
        ("name", w.name),
        ("aliases", ", ".join(aliases) or "-"),
        ("weights", "yes" if w.has_weights else "none released (random init only)"),
        ("params", f"{params / 1e6:.2f} M"),
        ("GMACs", f"{gmacs:.1f} per {t}x{h}x{h} clip"),
        ("classes", f"{w.num_classes or 'not published, read from the file'} ({_class_names(w)})"),
        ("architecture args", json.dumps(w.model_args, sort_keys=True)),
        (
            "input",
            f"{c} channels, {t} frames, stride {clip.sampling_stride}, "
            f"{'%g fps' % clip.frame_rate if clip.frame_rate else 'native fps'}",
        ),
        ("resize / crop", f"{clip.resize_size} / {clip.crop_size} ({clip.interpolation}, antialias={clip.antialias})"),
        ("mean / std", f"{clip.mean} / {clip.std}"),
        ("video top-1 / top-5", f"{top1} / {top5}" if top1 is not None else "not published"),
        ("source", f"{w.url} ({w.source_format})" if w.url else "-"),
        ("mirrors", ", ".join(m["url"] for m in w.mirrors) or "-"),
        ("weights licence", _licence(w)),
        ("paper", f"{w.paper_name} ({w.paper_ids})"),
        ("model card", f"r21d-zoo info {w.name} --card (config: --json)"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if w.notes:
        print(f"\n{w.notes}")
    return 0
