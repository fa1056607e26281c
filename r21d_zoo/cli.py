"""``r21d-zoo`` command line: list, info, demo."""

import argparse
import json
import sys
from typing import List, Optional

from .models import get_pretrained_cfg, list_aliases, list_models, list_pretrained, split_model_name_tag
from .models._registry import resolve_model_name


def _cmd_list(args: argparse.Namespace) -> int:
    names = list_pretrained(args.filter or "") if args.pretrained else list_models(args.filter or "")
    for name in names:
        print(name)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .model_card import model_stats, registry_config
    from .models._pretrained import metric_value

    name = resolve_model_name(args.name)
    config = registry_config(name)
    cfg = get_pretrained_cfg(name)
    if args.json:
        print(json.dumps(config, indent=2, sort_keys=True, default=str))
        return 0
    params, gmacs = model_stats(config)
    arch, tag = split_model_name_tag(name)
    c, t, h, w = cfg.input_size
    aliases = [a for a, target in list_aliases().items() if target == f"{arch}.{cfg.tag}"]
    rows = [
        ("name", f"{arch}.{cfg.tag}" if cfg.tag else arch),
        ("aliases", ", ".join(aliases) or "-"),
        ("weights", "yes" if cfg.has_weights else "none released (random init only)"),
        ("params", f"{params / 1e6:.2f} M"),
        ("GMACs", f"{gmacs:.1f} per {t}x{h}x{w} clip"),
        ("classes", f"{cfg.num_classes} ({'Kinetics-400 names' if cfg.label_set else 'no published names'})"),
        ("architecture args", json.dumps(cfg.model_args, sort_keys=True)),
        (
            "input",
            f"{c} channels, {t} frames, stride {cfg.sampling_stride}, "
            f"{'%g fps' % cfg.frame_rate if cfg.frame_rate else 'native fps'}",
        ),
        ("resize / crop", f"{cfg.resize_size} / {cfg.crop_size} ({cfg.interpolation}, antialias={cfg.antialias})"),
        ("mean / std", f"{cfg.mean} / {cfg.std}"),
        ("video top-1 / top-5", f"{metric_value(cfg, 'video_top1')} / {metric_value(cfg, 'video_top5')}"),
        ("source", f"{cfg.url} ({cfg.source_format})" if cfg.url else "-"),
        ("mirrors", ", ".join(m["url"] for m in cfg.mirrors) or "-"),
        ("license", cfg.license or "-"),
        ("paper", f"{cfg.paper_name} ({cfg.paper_ids})"),
        ("model card", f"model_cards/{arch}.{cfg.tag}.md" if cfg.tag else "-"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if cfg.notes:
        print(f"\n{cfg.notes}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import print_demo, run_demo

    print_demo(run_demo(args.model, pretrained=not args.random, video=args.video))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .demo import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="r21d-zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list architectures, or pretrained weights with --pretrained")
    p.add_argument("filter", nargs="?", help="fnmatch pattern, e.g. 'r2plus1d_*'")
    p.add_argument("--pretrained", action="store_true", help="list arch.tag names that have weights")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="show a weight's config, input spec, accuracy and provenance")
    p.add_argument("name", help="architecture, arch.tag or alias")
    p.add_argument("--json", action="store_true", help="print the full config.json instead")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("demo", help="synthesise a clip, run a model, print predictions and throughput")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--video", help="use this video instead of a synthetic clip")
    p.add_argument("--random", action="store_true", help="skip pretrained weights")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyError as e:  # unknown model names carry their own suggestions
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
