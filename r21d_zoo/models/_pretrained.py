"""The schema of one weight file: where it lives, what architecture it needs, how to feed it, how well it does.

Field names follow timm's ``PretrainedCfg`` (source, input, head, provenance), plus video fields (``num_frames``,
``frame_rate``, ``sampling_stride``, ``resize_size``) and ``model_args``: the architecture arguments that a state dict
cannot carry (BatchNorm eps, the (2+1)D width rule, pool1, the stem's temporal kernel).
"""

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Dict, List, Optional, Tuple, Union

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

LABEL_SETS = ("kinetics400",)


@lru_cache(maxsize=None)
def load_label_names(label_set: str) -> Tuple[str, ...]:
    """Class names of a label set shipped with the package (index order of the classifier)."""
    if label_set not in LABEL_SETS:
        raise KeyError(f"unknown label set {label_set!r}; known: {', '.join(LABEL_SETS)}")
    text = resources.files("r21d_zoo").joinpath("data", f"{label_set}_classes.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


@dataclass
class PretrainedCfg:
    # --- source ----------------------------------------------------------------------------------------------------
    url: Optional[str] = None  # original download location
    source_format: str = "pth"  # 'pth', 'safetensors' or 'caffe2_pkl' (converted on the fly by conversion/)
    hash_prefix: Optional[str] = None  # leading hex digits of the file's sha256, checked after download
    source_file: Optional[str] = None  # released file name, for provenance
    mirrors: Tuple[Dict[str, Any], ...] = ()  # same weights elsewhere: dicts of url, source_format, hash_prefix
    file: Optional[str] = None  # local file (set by local-dir: or by the user)
    hf_hub_id: Optional[str] = None  # 'org/repo' holding model.safetensors + config.json
    hf_hub_revision: Optional[str] = None
    architecture: Optional[str] = None
    tag: Optional[str] = None
    # --- architecture args the weights need ------------------------------------------------------------------------
    model_args: Dict[str, Any] = field(default_factory=dict)
    # --- input -----------------------------------------------------------------------------------------------------
    input_size: Tuple[int, ...] = (3, 16, 112, 112)  # C, T, H, W
    in_chans: int = 3
    num_frames: int = 16
    frame_rate: Optional[float] = None  # frames per second to resample to; None = native rate
    sampling_stride: int = 1  # take every n-th frame (after resampling)
    resize_size: Union[int, Tuple[int, int], None] = (128, 171)  # (H, W) ignoring aspect, or an int short side
    crop_size: int = 112
    crop_mode: str = "center"
    interpolation: str = "bilinear"
    antialias: bool = False
    mean: Tuple[float, ...] = KINETICS_MEAN
    std: Tuple[float, ...] = KINETICS_STD
    # --- head ------------------------------------------------------------------------------------------------------
    num_classes: int = 400
    label_set: Optional[str] = None  # a label set shipped with the package; None: no names were ever published
    first_conv: str = "stem.0"
    classifier: str = "fc"
    # --- quality and provenance ------------------------------------------------------------------------------------
    metrics: List[Dict[str, Any]] = field(default_factory=list)  # dataset, metric, value, protocol, source
    license: Optional[str] = None
    origin_url: Optional[str] = None
    paper_ids: Optional[str] = None
    paper_name: Optional[str] = None
    notes: Optional[str] = None

    @property
    def has_weights(self) -> bool:
        return bool(self.url or self.file or self.hf_hub_id)

    @property
    def label_names(self) -> Optional[Tuple[str, ...]]:
        return load_label_names(self.label_set) if self.label_set else None

    @property
    def name(self) -> str:
        return f"{self.architecture}.{self.tag}" if self.tag else str(self.architecture)

    def download_sources(self) -> List[Dict[str, Any]]:
        """URLs to try in order: hash-checked files first, then the original, then unverified mirrors."""
        sources = (
            [dict(url=self.url, source_format=self.source_format, hash_prefix=self.hash_prefix)] if self.url else []
        )
        sources += [dict(m) for m in self.mirrors]
        return sorted(sources, key=lambda s: s.get("hash_prefix") is None)

    def to_dict(self) -> Dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "PretrainedCfg":
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        for k in ("input_size", "mean", "std", "mirrors"):
            if k in kwargs and kwargs[k] is not None:
                kwargs[k] = tuple(kwargs[k])
        if isinstance(kwargs.get("resize_size"), list):
            kwargs["resize_size"] = tuple(kwargs["resize_size"])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "PretrainedCfg":
        return dataclasses.replace(self, **changes)


def generate_default_cfgs(cfgs: Dict[str, PretrainedCfg]) -> Dict[str, Dict[str, PretrainedCfg]]:
    """Group ``'arch.tag'`` -> cfg into arch -> {tag: cfg}; the first tag listed is the arch's default."""
    out: Dict[str, Dict[str, PretrainedCfg]] = {}
    for name, cfg in cfgs.items():
        arch, _, tag = name.partition(".")
        out.setdefault(arch, {})[tag] = cfg.replace(architecture=arch, tag=tag)
    return out


def metric_value(cfg: PretrainedCfg, metric: str, dataset: Optional[str] = None) -> Optional[float]:
    for m in cfg.metrics:
        if m["metric"] == metric and (dataset is None or m["dataset"] == dataset):
            return m["value"]
    return None
