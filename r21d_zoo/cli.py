"""``r21d-zoo`` command line: list, info, demo, extract."""

import argparse
import json
import os
import sys
from typing import List, Optional

from .models import get_pretrained_cfg, list_aliases, list_models, list_pretrained, split_model_name_tag
from .models._registry import resolve_model_name


DEFAULT_EXTRACT_MODEL = "r2plus1d_34.ig65m_32f"


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


def _cmd_extract(args: argparse.Namespace) -> int:
    from .distributed import all_reduce_sum, default_device, init_distributed, world_info_from_env
    from .features import ExtractConfig, discover_videos, run_extraction
    from .models import WeightsError, create_model

    world = world_info_from_env()
    if args.shard_id is not None or args.num_shards is not None:
        shard_id, num_shards = args.shard_id or 0, args.num_shards or 1
    else:
        world = init_distributed(world)
        shard_id, num_shards = world.rank, world.world_size
    try:
        model = create_model(
            args.model,
            pretrained=not args.random_weights,
            checkpoint_path=args.checkpoint,
            **json.loads(args.model_args or "{}"),
        )
    except WeightsError as e:
        print(
            f"error: {e}\n(pass --checkpoint PATH for a local file, or --random-weights to test the pipeline)",
            file=sys.stderr,
        )
        return 2
    cfg = ExtractConfig.from_model(
        model,
        num_frames=args.num_frames,
        frame_rate=args.frame_rate,
        sampling_stride=args.sampling_stride,
        clip_stride=args.stride_sec,
        num_clips=args.num_clips,
        pad=args.pad,
        crop_mode=args.crop,
        decoder_resize=args.fast_resize or None,
        layer=args.layer,
        spatial_pool=args.spatial_pool,
        temporal_pool=args.temporal_pool,
        batch_size=args.batch_size,
    )
    videos = discover_videos(args.inputs, args.extensions.split(","))
    if not videos:
        print(f"error: no videos found in {args.inputs} (extensions {args.extensions})", file=sys.stderr)
        return 2
    summary = run_extraction(
        videos,
        args.out,
        model,
        cfg,
        device=default_device(world, args.device),
        workers=args.workers,
        amp=args.amp,
        channels_last=args.channels_last,
        fmt=args.format,
        dtype=args.dtype,
        shard_id=shard_id,
        num_shards=num_shards,
        resume=not args.overwrite,
        progress=shard_id == 0,
        model_name=args.model,
        optimize=args.optimize,
    )
    failed = all_reduce_sum(summary.failed)
    print(
        f"shard {shard_id}/{num_shards}: {summary.done} extracted ({summary.clips} clips, "
        f"{summary.clips / max(summary.seconds, 1e-9):.1f} clips/s), {summary.skipped} already done, "
        f"{summary.failed} failed -> {args.out}/manifest.jsonl"
    )
    return 1 if failed else 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from .distill import DistillConfig, TeacherSpec, distill
    from .features import discover_videos
    from .train import OptimConfig

    videos = [v.path for v in discover_videos(args.inputs)]
    if not videos:
        print(f"error: no videos found in {args.inputs}", file=sys.stderr)
        return 2
    cfg = DistillConfig(
        student=args.student,
        student_args=json.loads(args.student_args or "{}"),
        modality=args.modality,
        num_frames=args.num_frames,
        frame_rate=args.frame_rate,
        resize_size=args.resize,
        crop_size=args.crop_size,
        target=args.target,
        teacher_frames=args.teacher_frames,
        temperature=args.temperature,
        loss=args.loss,
        entropy_threshold=args.entropy_threshold,
        batch_size=args.batch_size,
        workers=args.workers,
        amp=args.amp,
        seed=args.seed,
        optim=OptimConfig(
            lr=args.lr,
            reference_batch=args.reference_batch,
            epochs=args.epochs,
            warmup_epochs=args.warmup_epochs,
            schedule="cosine",
        ),
    )
    teachers = [TeacherSpec.create(name, pretrained=not args.random_teachers) for name in args.teacher]
    result = distill(videos, teachers, cfg, out_dir=args.out, device=args.device)
    if result.export_dir is not None:
        print(f"student exported to {result.export_dir} (load with create_model('local-dir:{result.export_dir}'))")
    return 0


def _clip_spec(args: argparse.Namespace):
    """The clip options given on the command line (None where the weights' config decides)."""
    from .data import ClipSpec

    resize = None if args.resize is None else (args.resize[0] if len(args.resize) == 1 else tuple(args.resize[:2]))
    return ClipSpec(args.num_frames, args.frame_rate, args.sampling_stride, resize)


def _cmd_finetune(args: argparse.Namespace) -> int:
    from .data import read_labelled
    from .finetune import EvalConfig, FinetuneConfig, finetune
    from .train import OptimConfig

    train = read_labelled(args.train)
    val = read_labelled(args.val, classes=train.classes) if args.val else None
    cfg = FinetuneConfig(
        model=args.model,
        pretrained=not args.random_weights,
        checkpoint_path=args.checkpoint,
        model_args=json.loads(args.model_args or "{}"),
        mode=args.mode,
        freeze_stages=args.freeze_stages,
        freeze_bn=args.freeze_bn,
        backbone_lr_mult=args.backbone_lr_mult,
        clip=_clip_spec(args),
        crop_size=args.crop_size,
        flip=not args.no_flip,
        batch_size=args.batch_size,
        accumulation=args.accumulation,
        workers=args.workers,
        amp=args.amp,
        channels_last=args.channels_last,
        grad_checkpointing=args.grad_checkpointing,
        sync_bn=not args.no_sync_bn,
        seed=args.seed,
        optim=OptimConfig(
            lr=args.lr,
            reference_batch=args.reference_batch,
            epochs=args.epochs,
            warmup_epochs=args.warmup_epochs,
            schedule=args.schedule,
            step_epochs=args.step_epochs,
            gamma=args.gamma,
            weight_decay=args.weight_decay,
        ),
        eval=EvalConfig(num_clips=args.eval_clips, crop_mode=args.eval_crop, workers=args.workers, amp=args.amp),
    )
    result = finetune(train, val, cfg, out_dir=args.out, device=args.device)
    last = result.history[-1] if result.history else {}
    print(json.dumps(dict(last_epoch=last, best_model=str(result.best_dir) if result.best_dir else None)))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import ClipSpec, read_labelled
    from .distributed import default_device, init_distributed
    from ._io import atomic_write
    from .finetune import EvalConfig, evaluate
    from .models import create_model

    world = init_distributed()
    device = default_device(world, args.device)
    model = create_model(args.model, pretrained=not args.random_weights, checkpoint_path=args.checkpoint).to(device)
    data = read_labelled(
        args.data, classes=model.pretrained_cfg.get("label_names") if args.classes_from_model else None
    )
    cfg = model.pretrained_cfg
    user = _clip_spec(args)
    spec = ClipSpec(
        user.num_frames or cfg["num_frames"],
        user.frame_rate if user.frame_rate is not None else cfg.get("frame_rate"),
        user.sampling_stride or cfg.get("sampling_stride", 1),
        user.resize_size or cfg["resize_size"],
    )
    metrics = evaluate(
        model,
        data,
        spec,
        args.crop_size or cfg["crop_size"],
        EvalConfig(args.num_clips, args.crop, args.workers, args.amp),
        device,
        world,
    )
    if world.is_primary:
        text = json.dumps(metrics, indent=2)
        if args.output:
            atomic_write(args.output, lambda f: f.write(text.encode()))
        keys = ("videos", "failed", "video_top1", "video_top5", "clip_top1", "clip_top5", "mAP")
        print(json.dumps({k: metrics[k] for k in keys if k in metrics}))
    return 1 if metrics.get("failed") else 0


def _cmd_probe(args: argparse.Namespace) -> int:
    from .data import read_labelled
    from .probe import run_probe

    train = read_labelled(args.train)
    test = read_labelled(args.test, classes=train.classes)
    summary = run_probe(args.train_features, train, args.test_features or args.train_features, test)
    print(json.dumps(summary, default=str))
    return 0


def _add_clip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-frames", type=int, help="default: the weights'")
    p.add_argument("--frame-rate", type=float, help="default: the weights' (or native)")
    p.add_argument("--sampling-stride", type=int)
    p.add_argument("--resize", type=int, nargs="+", help="H W, or a short side (default: the weights')")
    p.add_argument("--crop-size", type=int, help="default: the weights'")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--amp", choices=("bf16", "fp16", "none"), default="bf16", help="GPU only")
    p.add_argument("--device")
    p.add_argument("--checkpoint", help="weights from this local file")
    p.add_argument("--random-weights", action="store_true", help="no pretrained weights")


def build_parser() -> argparse.ArgumentParser:
    from .demo import DEFAULT_MODEL
    from .features import VIDEO_EXTENSIONS

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

    p = sub.add_parser(
        "extract",
        help="extract clip features of many videos (resumable; torchrun or --shard-id/--num-shards to scale out)",
        description="Clip settings default to the weights' config (frames, fps, resize, crop, mean/std).",
    )
    p.add_argument("inputs", nargs="+", help="video files, directories (recursive) or .txt/.csv lists of paths")
    p.add_argument(
        "--model",
        default=DEFAULT_EXTRACT_MODEL,
        help=f"arch.tag, alias, hf-hub:org/repo or local-dir:PATH (default: {DEFAULT_EXTRACT_MODEL}, the IG-65M "
        "pre-trained R(2+1)D-34 that ig65m-pytorch extracts with)",
    )
    p.add_argument("--checkpoint", help="load weights from this local file instead")
    p.add_argument("--random-weights", action="store_true", help="no pretrained weights (pipeline tests)")
    p.add_argument("--model-args", help="JSON of extra create_model arguments")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--format", choices=("npy", "safetensors"), default="npy")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="stored feature dtype")
    p.add_argument("--layer", default="pre_logits", help="pre_logits (default), logits, or a stage: layer1-4 / 0-4")
    p.add_argument("--spatial-pool", choices=("avg", "max", "none"), default="avg")
    p.add_argument("--temporal-pool", choices=("avg", "max", "none"), default="avg")
    p.add_argument("--num-frames", type=int, help="frames per clip (default: the weights')")
    p.add_argument("--frame-rate", type=float, help="resample to this fps (default: the weights'; else native)")
    p.add_argument("--sampling-stride", type=int, help="take every n-th frame")
    p.add_argument("--stride-sec", type=float, help="seconds between clip starts (default: back-to-back clips)")
    p.add_argument("--num-clips", type=int, help="N uniformly spaced clips per video instead of sliding windows")
    p.add_argument("--pad", choices=("repeat", "loop"), default="repeat", help="how the last clip is filled")
    p.add_argument("--crop", choices=("center", "three"), help="centre crop, or the mean over three crops")
    p.add_argument("--fast-resize", action="store_true", help="resize in the decoder (faster; not reference)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per forward pass")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="decoding processes")
    p.add_argument("--device", help="default: this rank's GPU, else CPU")
    p.add_argument("--amp", choices=("auto", "bf16", "fp16", "none"), default="auto", help="autocast on GPU")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="default: on GPU")
    p.add_argument("--optimize", action="store_true", help="fold BN, channels_last_3d, torch.compile on GPU")
    p.add_argument("--shard-id", type=int, help="this job's shard (for schedulers without torchrun)")
    p.add_argument("--num-shards", type=int)
    p.add_argument("--overwrite", action="store_true", help="recompute videos that are already done")
    p.add_argument("--extensions", default=",".join(VIDEO_EXTENSIONS), help="comma-separated, for directories")
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("distill", help="DistInit: train a video student from image teachers on unlabelled video")
    p.add_argument("inputs", nargs="+", help="video files, directories or lists (no labels needed)")
    p.add_argument("--teacher", action="append", required=True, help="timm model name (repeat for several)")
    p.add_argument("--random-teachers", action="store_true", help="teachers without weights (pipeline tests)")
    p.add_argument("--student", default="r2plus1d_18", help="registry architecture")
    p.add_argument("--student-args", help="JSON of create_model arguments")
    p.add_argument("--modality", choices=("rgb", "gray_diff"), default="rgb", help="student input")
    p.add_argument("-o", "--out", required=True, help="checkpoints, metrics.jsonl and the exported student")
    p.add_argument("--num-frames", type=int, default=8)
    p.add_argument("--frame-rate", type=float)
    p.add_argument("--resize", type=int, default=128, help="short side of decoded frames")
    p.add_argument("--crop-size", type=int, default=112)
    p.add_argument("--target", choices=("centre", "random", "multi"), default="centre", help="teacher frame(s)")
    p.add_argument("--teacher-frames", type=int, default=4, help="frames averaged for --target multi")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--loss", choices=("ce", "mse"), default="ce")
    p.add_argument("--entropy-threshold", type=float, help="drop examples whose teacher entropy (nats) is above")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8, help="per process")
    p.add_argument("--lr", type=float, default=0.1, help="per --reference-batch clips (linear scaling)")
    p.add_argument("--reference-batch", type=int, default=256)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--amp", choices=("bf16", "fp16", "none"), default="bf16", help="GPU only")
    p.add_argument("--device")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser("finetune", help="fine-tune on labelled clips (full or fc-only), evaluate every epoch")
    p.add_argument("--train", required=True, help="CSV (path,label), split list, or class-folder tree")
    p.add_argument("--val", help="validation split in the same formats")
    p.add_argument("--model", required=True, help="arch.tag, alias, hf-hub: or local-dir: to start from")
    p.add_argument("--model-args", help="JSON of extra create_model arguments (e.g. drop_rate)")
    p.add_argument("-o", "--out", required=True, help="checkpoints, metrics, curves.png and the best model")
    p.add_argument("--mode", choices=("full", "fc"), default="full", help="fc: train only the classifier")
    p.add_argument("--freeze-stages", type=int, default=0, help="freeze the stem (1) and the first layers")
    p.add_argument("--freeze-bn", action="store_true", help="keep BatchNorm statistics and affine frozen")
    p.add_argument("--backbone-lr-mult", type=float, default=1.0, help="LR factor for all but the classifier")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8, help="per process")
    p.add_argument("--accumulation", type=int, default=1, help="gradient accumulation steps")
    p.add_argument("--lr", type=float, default=0.01, help="per --reference-batch clips (scaled linearly)")
    p.add_argument("--reference-batch", type=int, default=64)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--schedule", choices=("step", "cosine"), default="step")
    p.add_argument("--step-epochs", type=int, default=4)
    p.add_argument("--gamma", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--no-flip", action="store_true", help="no horizontal flips (when left/right matters)")
    p.add_argument("--grad-checkpointing", action="store_true", help="less memory for long clips")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="default: on GPU")
    p.add_argument("--no-sync-bn", action="store_true", help="plain BN under DDP")
    p.add_argument("--eval-clips", type=int, default=10)
    p.add_argument("--eval-crop", choices=("center", "three", "full"), default="center")
    p.add_argument("--seed", type=int, default=0)
    _add_clip_args(p)
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("evaluate", help="clip- and video-level accuracy (or mAP) of a model on labelled videos")
    p.add_argument("--data", required=True, help="CSV, split list or class-folder tree")
    p.add_argument("--model", required=True)
    p.add_argument("--num-clips", type=int, default=10)
    p.add_argument("--crop", choices=("center", "three", "full"), default="center")
    p.add_argument("--classes-from-model", action="store_true", help="map label names with the model's label_names")
    p.add_argument("--output", help="write the full results (per-class report, confusion matrix) as JSON")
    _add_clip_args(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("probe", help="linear probe (logistic regression) on features from r21d-zoo extract")
    p.add_argument("--train", required=True, help="labelled training videos (CSV, list or folders)")
    p.add_argument("--test", required=True, help="labelled test videos")
    p.add_argument("--train-features", required=True, help="feature directory of the training videos")
    p.add_argument("--test-features", help="feature directory of the test videos (default: the same)")
    p.set_defaults(func=_cmd_probe)
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
