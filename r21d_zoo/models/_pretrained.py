"""The schema of one weight file: where it lives, what architecture it needs, how to feed it, how well it does.

Field names follow timm's ``PretrainedCfg`` (source, input, head, provenance), plus ``model_args`` (the architecture
arguments a state dict cannot carry: BatchNorm eps, the (2+1)D width rule, pool1, the stem's temporal kernel) and
``clip``, a :class:`ClipSpec`: the single description of how the weights see video. Serialised (``to_dict``, the
``model.pretrained_cfg`` dict and ``config.json``) the clip fields sit at the top level, as in timm's flat configs.
"""

import dataclasses
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from .._bounds import above, at_least, problems as bound_problems

HF_HUB_ORG = "r21d-zoo"  # the Hugging Face organisation `r21d-zoo publish` pushes to: one repo per tag, ORG/arch.tag
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
# caffe2's statistics of (dx, dy) Farneback flow in pixels at 112x112 crop scale (optical_flow.h, "generated from SOA"):
# the VMZ flow weights' normalisation, and the default of a flow student (distill --modality flow)
FLOW_MEAN = (0.0046635, 0.0046261)
FLOW_STD = (0.972347, 0.755146)

LABEL_SETS = ("kinetics400",)
CROP_MODES = ("center", "three", "full")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area")
MODALITIES = ("rgb", "flow")
FLOW_METHODS = ("farneback", "raft_small", "raft_large")  # r21d_zoo.video.flow computes each

ResizeSize = Union[int, Tuple[int, int], None]
_NULLABLE = ("frame_rate", "resize_size")  # clip fields where None means something (native rate, no resize)


@lru_cache(maxsize=None)
def load_label_names(label_set: str) -> Tuple[str, ...]:
    """Class names of a label set shipped with the package (index order of the classifier)."""
    if label_set not in LABEL_SETS:
        raise KeyError(f"unknown label set {label_set!r}; known: {', '.join(LABEL_SETS)}")
    text = resources.files("r21d_zoo.models").joinpath("labels", f"{label_set}.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def _help(text: str, **extra: Any) -> Dict[str, Any]:
    return dict(help=text, **extra)


@dataclass(frozen=True)
class ClipSpec:
    """How a model sees video: which frames make a clip and how they are resized, cropped and normalised.

    Every job (the evaluation transform, the clip reader, extraction, datasets, fine-tuning, distillation) takes one;
    :meth:`from_model` is the only place where user overrides meet the weights' values.
    """

    num_frames: int = field(default=16, metadata=_help("frames per clip", bound=at_least(1)))
    frame_rate: Optional[float] = field(
        default=None,
        metadata=_help("resample to this many frames per second (none: consecutive native frames)", bound=above(0)),
    )
    sampling_stride: int = field(
        default=1, metadata=_help("take every n-th frame (after resampling)", bound=at_least(1))
    )
    resize_size: ResizeSize = field(
        default=(128, 171),
        metadata=_help(
            "resize frames to H W (aspect ignored) or one number: the short side", flag="--resize", bound=at_least(1)
        ),
    )
    crop_size: int = field(default=112, metadata=_help("square crop size", bound=at_least(1)))
    crop_mode: str = field(
        default="center",
        metadata=_help(
            "evaluation crop: center, three (start/centre/end of the long side) or full (fully convolutional)",
            flag="--crop",
            choices=CROP_MODES,
        ),
    )
    interpolation: str = field(default="bilinear", metadata=_help("resize filter", choices=INTERPOLATIONS))
    antialias: bool = field(default=False, metadata=_help("antialiased resizing"))
    mean: Tuple[float, ...] = field(
        default=KINETICS_MEAN, metadata=_help("per-channel mean of [0, 1] RGB input (of flow in pixels for flow)")
    )
    std: Tuple[float, ...] = field(
        default=KINETICS_STD,
        metadata=_help("per-channel std of [0, 1] RGB input (of flow in pixels for flow)", bound=above(0)),
    )
    # What the model sees: RGB frames, or the (dx, dy) optical flow between consecutive frames of the cropped clip,
    # computed on the fly (r21d_zoo.video.flow). A property of the weights (their input channels), so no flag.
    modality: str = field(
        default="rgb", metadata=_help("rgb frames or optical flow computed from them", choices=MODALITIES, cli=False)
    )
    flow_method: str = field(
        default="farneback",
        metadata=_help(
            "how a flow model's flow is computed: farneback (CPU; what the VMZ flow weights saw) or raft_small / "
            "raft_large (torchvision's RAFT, for GPUs)",
            choices=FLOW_METHODS,
        ),
    )

    def __post_init__(self) -> None:
        resize = self.resize_size
        if isinstance(resize, (list, tuple)):
            resize = int(resize[0]) if len(resize) == 1 else (int(resize[0]), int(resize[1]))
        object.__setattr__(self, "resize_size", resize)
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        problems = bound_problems(self)
        if self.crop_mode not in CROP_MODES:
            problems.append(f"crop_mode must be one of {CROP_MODES}, got {self.crop_mode!r}")
        if self.interpolation not in INTERPOLATIONS:
            problems.append(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if len(self.mean) != len(self.std):
            problems.append(f"mean {self.mean} and std {self.std} have different lengths")
        if self.modality not in MODALITIES:
            problems.append(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        elif self.modality == "flow" and len(self.mean) != 2:
            problems.append(f"flow has 2 channels (dx, dy) but mean has {len(self.mean)} values")
        if self.flow_method not in FLOW_METHODS:
            problems.append(f"flow_method must be one of {FLOW_METHODS}, got {self.flow_method!r}")
        if problems:
            raise ValueError("invalid clip settings: " + "; ".join(problems))

    @classmethod
    def fields(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ClipSpec":
        """The clip fields of a flat config (``model.pretrained_cfg``, ``config.json``); missing ones take defaults."""
        return cls(**{k: d[k] for k in cls.fields() if k in d and (d[k] is not None or k in _NULLABLE)})

    @classmethod
    def from_model(cls, model_or_cfg: Any = None, **overrides: Any) -> "ClipSpec":
        """The clip of a model's weights (a module with ``pretrained_cfg``, a :class:`PretrainedCfg`, a ClipSpec or a
        flat dict), with ``overrides`` replacing single fields. An override of ``None`` keeps the weights' value."""
        unknown = sorted(set(overrides) - set(cls.fields()))
        if unknown:
            raise TypeError(f"unknown clip setting(s) {unknown}; a ClipSpec has {', '.join(cls.fields())}")
        if model_or_cfg is None:
            base = cls()
        elif isinstance(model_or_cfg, ClipSpec):
            base = model_or_cfg
        elif isinstance(model_or_cfg, PretrainedCfg):
            base = model_or_cfg.clip
        elif isinstance(model_or_cfg, Mapping):
            base = cls.from_dict(model_or_cfg)
        else:
            cfg = getattr(model_or_cfg, "pretrained_cfg", None)
            if cfg is None:
                raise ValueError(
                    f"{type(model_or_cfg).__name__} has no pretrained_cfg; build it with r21d_zoo.create_model or "
                    f"pass a ClipSpec"
                )
            base = cls.from_dict(cfg)
        changes = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(base, **changes) if changes else base

    @property
    def in_chans(self) -> int:
        """Channels of the model's input: 2 for flow, else one per mean value."""
        return 2 if self.modality == "flow" else len(self.mean)

    def frames_to_read(self) -> Tuple[int, int]:
        """(frames, stride) a reader decodes for one clip. A flow clip needs the frame after each of its
        ``num_frames`` positions: with stride s, flow position l is computed between frames l*s and l*s + 1 (VMZ's
        ``ClipTransformOpticalFlow``: consecutive frames, whatever the sampling rate), so it reads
        ``(num_frames - 1) * s + 2`` consecutive frames."""
        if self.modality == "flow":
            return (self.num_frames - 1) * self.sampling_stride + 2, 1
        return self.num_frames, self.sampling_stride

    def clip_seconds(self, native_fps: float) -> float:
        """Seconds one clip spans at this spec's frame rate (or the video's native one)."""
        return self.num_frames * self.sampling_stride / (self.frame_rate or native_fps)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


_SOURCE_FIELDS = ("url", "hash_prefix", "source_file", "mirrors", "file", "hf_hub_id", "hf_hub_revision")


@dataclass
class PretrainedCfg:
    # --- source ----------------------------------------------------------------------------------------------------
    url: Optional[str] = None  # original download location
    source_format: str = "pth"  # 'pth', 'safetensors' or 'caffe2_pkl' (converted on the fly by models/_caffe2.py)
    hash_prefix: Optional[str] = None  # leading hex digits of the file's sha256, checked after download
    source_file: Optional[str] = None  # released file name, for provenance
    # Same weights elsewhere: dicts of url, source_format, hash_prefix, and head=False for a backbone-only file.
    # A mirror without a hash is only used once `r21d-zoo verify-weights` has matched it to the original.
    mirrors: Tuple[Dict[str, Any], ...] = ()
    file: Optional[str] = None  # local file (set by local-dir: or by the user)
    hf_hub_id: Optional[str] = None  # 'org/repo' holding model.safetensors + config.json
    hf_hub_revision: Optional[str] = None
    architecture: Optional[str] = None
    tag: Optional[str] = None
    base_model: Optional[str] = None  # what a derived model started from: a weight tag, a 2D model, or None (random)
    # --- architecture args the weights need ------------------------------------------------------------------------
    model_args: Dict[str, Any] = field(default_factory=dict)
    # --- input -----------------------------------------------------------------------------------------------------
    in_chans: int = 3
    clip: ClipSpec = field(default_factory=ClipSpec)
    # --- head ------------------------------------------------------------------------------------------------------
    num_classes: Optional[int] = 400  # None: not published, read from the file (built headless without weights)
    label_set: Optional[str] = None  # a label set shipped with the package
    labels: Optional[Tuple[str, ...]] = None  # a derived model's own class names (fine-tuning)
    datasets: Tuple[str, ...] = ()  # what the weights were trained on (hub ids); empty: read from the tag
    first_conv: str = "stem.0"
    classifier: str = "fc"
    # --- quality and provenance ------------------------------------------------------------------------------------
    metrics: List[Dict[str, Any]] = field(default_factory=list)  # dataset, metric, value, protocol, source
    license: Optional[str] = None  # Hub licence id of the *weights*; "other" with a name and link when not standard
    license_name: Optional[str] = None
    license_link: Optional[str] = None
    origin_url: Optional[str] = None
    paper_ids: Optional[str] = None
    paper_name: Optional[str] = None
    notes: Optional[str] = None

    @property
    def has_weights(self) -> bool:
        return bool(self.url or self.file or self.hf_hub_id)

    @property
    def label_names(self) -> Optional[Tuple[str, ...]]:
        if self.labels is not None:
            return tuple(self.labels)
        return load_label_names(self.label_set) if self.label_set else None

    @property
    def name(self) -> str:
        return f"{self.architecture}.{self.tag}" if self.tag else str(self.architecture)

    @property
    def input_size(self) -> Tuple[int, int, int, int]:
        """C, T, H, W of one clip."""
        return (self.in_chans, self.clip.num_frames, self.clip.crop_size, self.clip.crop_size)

    def download_sources(self) -> List[Dict[str, Any]]:
        """URLs to try in order: hash-checked files first, then the original, then mirrors without a hash. Each is a
        dict of url, source_format, hash_prefix, head (False: backbone only) and mirror (not the original)."""
        original = dict(url=self.url, source_format=self.source_format, hash_prefix=self.hash_prefix, mirror=False)
        sources = [original] if self.url else []
        sources += [{"hash_prefix": None, "head": True, **m, "mirror": True} for m in self.mirrors]
        original["head"] = True
        return sorted(sources, key=lambda s: (s["hash_prefix"] is None, s["mirror"]))

    def derive(self, **changes: Any) -> "PretrainedCfg":
        """The cfg of a model made from this one (fine-tuned, distilled, inflated): the source (urls, hub id, file,
        hashes), tag, metrics, datasets and published label set are cleared, ``base_model`` records where it started
        (this cfg's name unless given; None: from random initialisation, which also clears the weights' licence), then
        ``changes`` apply (``clip`` may be a ClipSpec or a dict of overrides)."""
        derived = dict(
            {k: None for k in _SOURCE_FIELDS},
            source_format="safetensors",  # what save_pretrained writes
            mirrors=(),
            tag=None,
            base_model=self.name if self.tag else self.base_model,
            metrics=[],
            datasets=(),
            label_set=None,
            labels=None,
            notes=None,
        )
        clip = changes.pop("clip", None)
        derived.update(changes)
        if derived["base_model"] is None:  # nothing loaded (random initialisation): no licence of any weights
            derived.update({k: changes.get(k) for k in ("license", "license_name", "license_link")})
        out = dataclasses.replace(self, **derived)
        if isinstance(clip, Mapping):
            out.clip = ClipSpec.from_model(out.clip, **clip)
        elif clip is not None:
            out.clip = clip
        return out

    def to_dict(self) -> Dict[str, Any]:
        """Flat dict (clip fields at the top level, plus ``input_size`` and ``label_names``); ``None`` values dropped
        except ``frame_rate`` (None there means the native rate) and ``base_model`` (None means random init)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "clip"}
        d = {k: v for k, v in d.items() if v is not None or k == "base_model"}
        d.update(self.clip.to_dict(), input_size=self.input_size, label_names=self.label_names)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PretrainedCfg":
        """Inverse of :meth:`to_dict` (unknown keys, e.g. timm's, are ignored)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"clip"}
        kwargs = {k: v for k, v in d.items() if k in known}
        for k in ("mirrors", "labels", "datasets"):
            if kwargs.get(k) is not None:
                kwargs[k] = tuple(kwargs[k])
        clip = d["clip"] if isinstance(d.get("clip"), ClipSpec) else ClipSpec.from_dict(d)
        cfg = cls(clip=clip, **kwargs)
        names = d.get("label_names")  # the visible field (timm's): names a user set there win over the label set
        if names and tuple(names) != cfg.label_names:
            cfg = cfg.replace(labels=tuple(str(n) for n in names), label_set=None)
        return cfg

    def replace(self, **changes: Any) -> "PretrainedCfg":
        return dataclasses.replace(self, **changes)


def set_derived_cfg(model: Any, **changes: Any) -> PretrainedCfg:
    """Replace ``model.pretrained_cfg`` by :meth:`PretrainedCfg.derive` of it; returns the new cfg."""
    cfg = PretrainedCfg.from_dict(model.pretrained_cfg).derive(**changes)
    model.pretrained_cfg = cfg.to_dict()
    return cfg


def generate_default_cfgs(
    cfgs: Dict[str, PretrainedCfg], published: Iterable[str] = (), hub_org: str = HF_HUB_ORG
) -> Dict[str, Dict[str, PretrainedCfg]]:
    """Group ``'arch.tag'`` -> cfg into arch -> {tag: cfg}; the first tag listed is the arch's default. Tags in
    ``published`` (pushed by ``r21d-zoo publish``) gain their Hub copy, ``hub_org/arch.tag``, tried first."""
    published = set(published)
    unknown = sorted(published - set(cfgs))
    if unknown:
        raise ValueError(f"published tag(s) not in the weight table: {', '.join(unknown)}")
    out: Dict[str, Dict[str, PretrainedCfg]] = {}
    for name, cfg in cfgs.items():
        arch, _, tag = name.partition(".")
        hub = dict(hf_hub_id=f"{hub_org}/{name}") if name in published else {}
        out.setdefault(arch, {})[tag] = cfg.replace(architecture=arch, tag=tag, **hub)
    return out


def evaluation_protocol(protocol: str) -> Optional[Dict[str, Any]]:
    """The clips and crops a published metric's protocol text states (``"10 clips x 3 crops ..."``, ``"single
    clip"``, ``"5 clips of 16 frames ..."``) as ``num_clips`` and ``crop_mode``; None for one that cannot be rerun
    from clips of the model alone (dense prediction, an audio-visual model)."""
    if re.search(r"\bdense\b|audio-visual", protocol):
        return None
    if protocol.strip().startswith("single clip"):
        return dict(num_clips=1, crop_mode="center")
    clips = re.search(r"(\d+) (?:uniform )?clips?\b", protocol)
    if not clips:
        return None
    crops = re.search(r"x (\d+) (?:centre |center )?crops?\b", protocol)
    return dict(num_clips=int(clips.group(1)), crop_mode="three" if crops and crops.group(1) == "3" else "center")


def metric_value(cfg: PretrainedCfg, metric: str, dataset: Optional[str] = None) -> Optional[float]:
    for m in cfg.metrics:
        if m["metric"] == metric and (dataset is None or m["dataset"] == dataset):
            return m["value"]
    return None
