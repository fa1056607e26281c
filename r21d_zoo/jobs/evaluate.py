"""``r21d-zoo evaluate``: a model's accuracy on a labelled dataset by its weights' protocol (see
:mod:`r21d_zoo.infer.scores`), written as JSON with the confusion matrix and per-class pictures."""

import json
from pathlib import Path
from .._errors import EXIT_PARTIAL
from .._io import atomic_write, writable_file
from ..train.distributed import default_device, init_distributed
from .configs import EvaluateJobConfig as EvaluateJobConfig
from ..infer.config import RANDOM_SEED, ModelSource
from ..infer.figures import write_evaluation_figures
from ..infer.scores import add_published, evaluate, evaluate_two_stream, evaluation_spec, model_classes
from ..infer.scores import published_metrics, video_protocol


def run(cfg: EvaluateJobConfig) -> int:
    """Scores are over the model's classes: labels are mapped onto its label names (or indices)."""
    for path, flag in ((cfg.output, "--output"), (cfg.save_scores, "--save-scores")):
        if path:
            writable_file(path, flag)
    world = init_distributed()
    device = default_device(world, cfg.device)
    model = cfg.model.create(seed=RANDOM_SEED).to(device)
    flow_source = ModelSource(cfg.flow_model, cfg.model.pretrained) if cfg.flow_model else None
    flow_model = flow_source.create(seed=RANDOM_SEED).to(device) if flow_source else None
    data = cfg.labels.read(cfg.data, classes=model_classes(model), subset="test")
    published = published_metrics(model, data)
    protocol = video_protocol(published)
    num_clips = cfg.num_clips or (protocol["num_clips"] if protocol else 10)
    spec = evaluation_spec(model, protocol, cfg.clip)
    args = (device, world, cfg.workers, cfg.amp, bool(cfg.save_scores), cfg.runtime)
    if flow_model is None:
        metrics = evaluate(model, data, spec, num_clips, *args)
        add_published(metrics, published)
        streams = {"": (metrics, spec)}
    else:
        flow_published = published_metrics(flow_model, data)
        flow_clip = {k: v for k, v in cfg.clip.items() if k not in ("mean", "std")}  # --mean/--std: the RGB model's
        flow_spec = evaluation_spec(flow_model, video_protocol(flow_published), flow_clip)
        metrics = evaluate_two_stream(model, flow_model, data, spec, flow_spec, num_clips, cfg.fusion_weight, *args)
        for (name, m), p in zip(metrics["streams"].items(), (published, flow_published)):
            add_published(m, p)
        streams = {f"{name} stream ": (metrics["streams"][name], s) for name, s in (("rgb", spec), ("flow", flow_spec))}
    scores = metrics.pop("video_scores", [])
    if world.is_primary:
        metrics["excluded"] = data.excluded
        metrics["missing"] = data.missing  # listed but not on disk: among the failed
        keys = ("videos", "failed", "missing", "excluded", "video_top1", "video_top5", "clip_top1", "clip_top5", "mAP")
        if cfg.output:
            figures = write_evaluation_figures(metrics, Path(cfg.output))
            text = json.dumps(metrics, indent=2)
            atomic_write(cfg.output, lambda f: f.write(text.encode()))
            print(f"results -> {cfg.output}; figures -> {', '.join(map(str, figures))}")
        if cfg.save_scores:
            lines = "".join(json.dumps(r) + "\n" for r in scores)
            atomic_write(cfg.save_scores, lambda f: f.write(lines.encode()))
        summary = {k: metrics[k] for k in keys if k in metrics}
        if flow_model is not None:
            summary["flow_weight"] = cfg.fusion_weight
            summary["streams"] = {n: {k: m[k] for k in keys if k in m} for n, m in metrics["streams"].items()}
        print(json.dumps(summary))
        for name, (m, s) in streams.items():
            for p in m.get("published", []):
                print(
                    f"{name}{p['metric']} on {p['dataset']}: measured {p['measured']:.3f}, published "
                    f"{p['published']:.3f} ({p['difference']:+.3f}); published protocol: {p['protocol']}; run with "
                    f"{num_clips} clips x {s.crop_mode} crop"
                )
    return EXIT_PARTIAL if metrics.get("failed") else 0
