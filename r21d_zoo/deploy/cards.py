"""Model cards: of every weight tag, from the registry (``r21d-zoo cards`` writes them), and of any saved model
(``save_pretrained``), derived models included."""

import json
from functools import lru_cache
from typing import Any, Dict, List, Tuple

import torch

from ..models import create_model, model_config, model_entrypoint

DATASET_IDS = {
    "kinetics400": "kinetics-400",
    "ig65m": "ig-65m",
    "sports1m": "sports-1m",
    "audioset": "audioset",
    "imagenet": "imagenet-1k",
}
# How a metric's dataset field reads in a model-index: type, name, split (anything else is a user's own dataset).
EVAL_DATASETS = {"kinetics400-val": ("kinetics-400", "Kinetics-400", "validation")}
METRIC_WORDS = {
    "clip_top1": "clip top-1",
    "clip_top5": "clip top-5",
    "video_top1": "video top-1",
    "video_top5": "video top-5",
    "video_map": "video mAP",
}
CITATIONS = {
    "arXiv:1711.11248": """@inproceedings{tran2018closer,
  title={A Closer Look at Spatiotemporal Convolutions for Action Recognition},
  author={Tran, Du and Wang, Heng and Torresani, Lorenzo and Ray, Jamie and LeCun, Yann and Paluri, Manohar},
  booktitle={Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages={6450--6459},
  year={2018}
}""",
    "arXiv:1905.00561": """@inproceedings{ghadiyaram2019large,
  title={Large-scale weakly-supervised pre-training for video action recognition},
  author={Ghadiyaram, Deepti and Feiszli, Matt and Tran, Du and Yan, Xueting and Wang, Heng and Mahajan, Dhruv},
  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages={12046--12055},
  year={2019}
}""",
    "arXiv:1905.12681": """@inproceedings{wang2020makes,
  title={What Makes Training Multi-Modal Classification Networks Hard?},
  author={Wang, Weiyao and Tran, Du and Feiszli, Matt},
  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2020}
}""",
    "arXiv:1904.02811": """@inproceedings{tran2019video,
  title={Video Classification with Channel-Separated Convolutional Networks},
  author={Tran, Du and Wang, Heng and Torresani, Lorenzo and Feiszli, Matt},
  booktitle={Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  pages={5552--5561},
  year={2019}
}""",
}


@lru_cache(maxsize=None)
def _stats(arch: str, model_args_json: str, input_size: Tuple[int, ...]) -> Tuple[int, float]:
    """Parameters and GMACs (multiply-accumulates) of one forward, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"), torch.no_grad():
        model = model_entrypoint(arch)(**json.loads(model_args_json)).eval()  # BN counts no MACs in either mode
        x = torch.empty(1, *input_size)
        with FlopCounterMode(display=False) as counter:
            model(x)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() / 2e9


def model_stats(config: Dict[str, Any]) -> Tuple[int, float]:
    args = {k: v for k, v in config["model_args"].items() if k not in ("block", "conv_makers", "layers", "stem")}
    return _stats(
        config["architecture"], json.dumps(args, sort_keys=True), tuple(config["pretrained_cfg"]["input_size"])
    )


def registry_config(name: str) -> Dict[str, Any]:
    """The config.json a registry weight would have, built without allocating weights."""
    with torch.device("meta"):
        model = create_model(name)
    return model_config(model, weights_loaded=True)


def _datasets(p: Dict[str, Any]) -> List[str]:
    """A derived model's own datasets, else those its tag names (a random-init model has none)."""
    if p.get("datasets"):
        return list(p["datasets"])
    if not p.get("tag"):
        return []
    return [v for k, v in DATASET_IDS.items() if k in p["tag"]] or ["kinetics-400"]


def _resize_text(p: Dict[str, Any]) -> str:
    r = p.get("resize_size")
    if isinstance(r, int):
        return f"resize the short side to {r} (aspect kept)"
    if r:
        return f"resize to {r[0]}x{r[1]} (HxW, aspect ignored)"
    return "no resize"


def _eval_results(p: Dict[str, Any]) -> List[Any]:
    """The weights' recorded metrics as Hub ``EvalResult``s (the card's ``model-index``), protocol in words."""
    from huggingface_hub import EvalResult

    out = []
    for m in p.get("metrics") or []:
        dataset_type, dataset_name, split = EVAL_DATASETS.get(m["dataset"], (m["dataset"], m["dataset"], None))
        words = METRIC_WORDS.get(m["metric"], m["metric"])
        is_url = m["source"].startswith("https://")
        out.append(
            EvalResult(
                task_type="video-classification",
                task_name="Video Classification",
                dataset_type=dataset_type,
                dataset_name=dataset_name,
                dataset_split=split,
                metric_type=m["metric"],
                metric_name=f"{words} accuracy ({m['protocol']})",
                metric_value=m["value"],
                source_name=m["source"].rsplit("/", 1)[-1] if is_url else None,  # the Hub needs a URL with a name
                source_url=m["source"] if is_url else None,
            )
        )
    return out


def _licence_text(p: Dict[str, Any]) -> str:
    if not p.get("license"):
        return "no licence is recorded for these weights."
    if p["license"] == "other":
        return f"`other`: {p.get('license_name')} ({p.get('license_link')})."
    return f"`{p['license']}`."


def card_data(config: Dict[str, Any]) -> Any:
    """The card's front matter as ``huggingface_hub.ModelCardData``: library, licence of the weights, datasets,
    ``base_model`` (derived models) and a ``model-index`` of the recorded results."""
    from huggingface_hub import ModelCardData

    p = config["pretrained_cfg"]
    arch, tag = p.get("architecture") or config["architecture"], p.get("tag")
    derived = not tag
    licence = {k: p.get(k) for k in ("license", "license_name", "license_link") if p.get(k)}
    return ModelCardData(
        model_name=f"{arch}.{tag}" if tag else arch,
        library_name="r21d_zoo",
        pipeline_tag="video-classification",
        tags=["video-classification", "r21d_zoo", "pytorch", "safetensors"],
        datasets=_datasets(p) or None,
        base_model=p.get("base_model") if derived else None,
        metrics=["accuracy"],
        eval_results=_eval_results(p) or None,
        **licence,
    )


def render_model_card(config: Dict[str, Any]) -> str:
    """The Hub model card (``README.md``) of a model's ``config.json``; ``ModelCard.load`` reads its front matter."""
    from huggingface_hub import ModelCard

    p = config["pretrained_cfg"]
    arch, tag = p.get("architecture") or config["architecture"], p.get("tag")
    derived = not tag
    name = f"{arch}.{tag}" if tag else arch
    params, gmacs = model_stats(config)
    front = ["---", card_data(config).to_yaml(), "---", ""]
    c, t, h, w = p["input_size"]
    stride = p.get("sampling_stride", 1)
    if p.get("modality") == "flow":
        read, rgb = (t - 1) * stride + 2, ""  # ClipSpec.frames_to_read
        flow = (
            f"optical flow (dx, dy) in pixels from each cropped frame to the next ({p.get('flow_method', 'farneback')}"
            f"; {read} consecutive RGB frames give {t} flow frames at stride {stride}); "
        )
    else:
        read, rgb, flow = t, "RGB in [0, 1]; ", ""
    rate = f"{p['frame_rate']:g} fps" if p.get("frame_rate") else "the native frame rate"
    names = config.get("label_names")
    if p.get("label_set"):
        labels = "Kinetics-400 class names ship with the package (`model.pretrained_cfg['label_names']`)."
    elif names:
        shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
        labels = f"{len(names)}: {shown} (`model.pretrained_cfg['label_names']`)."
    elif not config["num_classes"]:
        labels = (
            "not published; read from the file's classifier (`last_out_L{N}`) when the weights load (without weights "
            "the model is built headless and returns features)."
        )
    else:
        labels = f"{config['num_classes']} classes; no class names were ever published for this head."
    if derived:
        origin = f"derived from `{p['base_model']}`" if p.get("base_model") else "trained from random initialisation"
        title, load = f"{arch} ({origin})", 'create_model("local-dir:<this folder>")'
    elif p.get("hf_hub_id"):
        title, load = name, f'create_model("hf-hub:{p["hf_hub_id"]}")'
    else:
        title, load = name, f'create_model("{name}", pretrained=True)'
    lines = front + [
        f"# Model card for {title}",
        "",
        f"{p.get('notes') or 'A video classification model.'}",
        "",
        "## Model Details",
        "",
        f"- **Architecture:** `{arch}`",
        f"- **Params (M):** {params / 1e6:.1f}",
        f"- **GMACs:** {gmacs:.1f} (one {t}x{h}x{w} clip)",
        f"- **Clip:** {t} frames, every {stride} frame(s) at {rate}, {c} channels, {h}x{w} crop",
        f"- **Classes:** {labels}",
        f"- **Architecture args of the weights:** `{json.dumps(p.get('model_args', {}), sort_keys=True)}`",
        f"- **Paper:** {p.get('paper_name', '')} ({p.get('paper_ids', '')})",
        f"- **Original:** {p.get('origin_url', '')}",
        "",
        "## Usage",
        "",
        "```python",
        "import r21d_zoo, torch",
        f"model = r21d_zoo.{load}.eval()",
        "transform = r21d_zoo.create_transform(model)  # the exact preprocessing below",
        f"frames = torch.randint(0, 256, ({read}, 240, 320, 3), dtype=torch.uint8)  # T x H x W x C uint8 RGB",
        "with torch.inference_mode():",
        "    logits = model(transform(frames))",
        "```",
        "",
        f"Preprocessing: {rgb}{_resize_text(p)}, {p.get('interpolation', 'bilinear')} "
        f"(antialias={p.get('antialias', False)}); centre crop {h}; {flow}mean {tuple(p['mean'])}, "
        f"std {tuple(p['std'])}.",
        "",
        "## Evaluation",
        "",
    ]
    metrics = p.get("metrics") or []
    if metrics:
        lines += ["| dataset | metric | value | protocol | source |", "|---|---|---|---|---|"]
        lines += [
            f"| {m['dataset']} | {m['metric']} | {m['value']} | {m['protocol']} | {m['source']} |" for m in metrics
        ]
    else:
        lines.append(
            "No accuracy was recorded for this model."
            if derived
            else "No accuracy was published for this checkpoint itself (pre-training only, or listed as TBD)."
        )
    lines += ["", "## Provenance", ""]
    if derived:
        lines.append(f"- {origin[0].upper()}{origin[1:]} with r21d_zoo (not an upstream release).")
    if p.get("url"):
        lines.append(f"- Original file: `{p.get('source_file')}` ({p.get('source_format')}) from {p['url']}")
    for m in p.get("mirrors") or []:
        check = (
            f"sha256 prefix {m['hash_prefix']}"
            if m.get("hash_prefix")
            else "no hash published: used only once `r21d-zoo verify-weights` has matched it to the original"
        )
        part = "" if m.get("head", True) else ", backbone only"
        lines.append(f"- Mirror: {m['url']} ({m['source_format']}{part}, {check})")
    if p.get("source_format") == "caffe2_pkl":
        lines.append(
            "- caffe2 blobs are mapped 1:1 to state-dict keys by `conversion/` (BatchNorm eps 1e-3, `_riv` "
            "copied as running variance, every blob used exactly once); see conversion/README.md."
        )
    lines += [
        f"- Licence of the weights: {_licence_text(p)} The r21d_zoo code is Apache-2.0.",
        "",
        "## Citation",
        "",
    ]
    lines += [f"```bibtex\n{CITATIONS[p['paper_ids']]}\n```" for pid in [p.get("paper_ids")] if pid in CITATIONS]
    return str(ModelCard("\n".join(lines) + "\n"))
