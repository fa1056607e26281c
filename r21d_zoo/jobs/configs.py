"""Every command's settings, one dataclass a command (with the layers' own: :class:`~r21d_zoo.infer.config.ModelSource`,
:class:`~r21d_zoo.infer.config.ExtractConfig`, :class:`~r21d_zoo.train.config.TrainConfig`, ...), importable without
torch: the command line builds its options and help from them at once, and ``--config FILE.yaml`` reads into them.
Each task module (``jobs/extract.py``, ...) runs its config."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional, Tuple

from .._bounds import Checked, above, at_least, between
from .._errors import UsageError
from .._options import (
    CHANNELS_LAST_HELP,
    DATA_HELP,
    FLIP_HELP,
    FLOW_MODEL_HELP,
    INCLUDE_HELP,
    MODEL_ARGS_HELP,
    TRAIN_HELP,
    device_field,
    runtime_field,
    frames_fps_field,
    workers_field,
    DECODERS,
    DEFAULT_DECODER,
    FEATURE_FORMAT_NAMES,
    INFERENCE_AMP_HELP,
    INT8,
    VIDEO_EXTENSIONS,
    AMP_HELP,
    Amp,
    InferenceAmp,
)
from ..data.options import LabelOptions
from ..infer.config import CLASSIFIER_MODEL, ExtractConfig, ModelSource, PredictConfig, OUTPUTS, clip_field
from ..infer.config import parse_json_object
from ..train.config import OptimConfig, SampleOptimConfig, TrainConfig, ig65m_schedule

DEMO_MODEL = "r2plus1d_34.ig65m_ft_kinetics400_8f"  # a Kinetics classifier, so the predictions read as actions


def _distill_optim() -> OptimConfig:
    return OptimConfig(lr=0.1, reference_batch=256, epochs=10, warmup_epochs=1, schedule="cosine")


Direction = Literal["left", "right", "up", "down", "up_left", "up_right", "down_left", "down_right"]



@dataclass
class CheckVideosConfig(Checked):
    """Check that every video of a dataset decodes (duration, rate, size, frames, segments); list the bad ones."""

    out: str = field(metadata=dict(flag=("-o", "--out"), help="folder for report.jsonl, bad.txt and summary.json"))
    inputs: List[str] = field(
        default_factory=list,
        metadata=dict(positional=True, help="video files, directories (recursive) or .txt/.csv lists of paths"),
    )
    data: Optional[str] = field(default=None, metadata=dict(help=DATA_HELP))
    labels: LabelOptions = field(default_factory=LabelOptions)
    decoder: str = field(default=DEFAULT_DECODER, metadata=dict(help="video decoding decoder", choices=DECODERS))
    workers: int = workers_field()
    extensions: str = field(default=",".join(VIDEO_EXTENSIONS), metadata=dict(help="comma-separated, for folders"))


@dataclass
class DedupConfig(Checked):
    """Find pre-training videos that near-duplicate target videos (cosine over extracted features); write their list."""

    pretrain: str = field(metadata=dict(help="feature folder of the pre-training videos (r21d-zoo extract -o)"))
    target: str = field(metadata=dict(help="feature folder of the target videos (e.g. Kinetics, UCF101, HMDB51)"))
    out: str = field(metadata=dict(flag=("-o", "--out"), help="exclusion list to write, one name or key per line"))
    threshold: float = field(
        default=0.8, metadata=dict(help="cosine similarity at which a video is a duplicate", bound=between(-1, 1))
    )
    shards: Optional[str] = field(
        default=None, metadata=dict(help="the packed pre-training shards: write sample keys and report per label")
    )
    index: Literal["exact", "faiss"] = field(
        default="exact", metadata=dict(help="exact search in chunks, or faiss HNSW over the targets (approximate)")
    )
    grid: Optional[int] = field(
        default=None,
        metadata=dict(
            help="average-pool spatial maps to N x N cells first: small layout-aware rows", bound=at_least(1)
        ),
    )
    mirrored_target: Optional[str] = field(
        default=None,
        metadata=dict(help="the target videos extracted again with --mirror: finds left-right flipped copies too"),
    )


@dataclass
class DemoConfig:
    """Synthesise a clip (or read one), run a model, print predictions, feature shape and throughput."""

    model: ModelSource = field(default_factory=lambda: ModelSource(DEMO_MODEL))
    video: Optional[str] = field(default=None, metadata=dict(help="use this video instead of a synthetic clip"))
    runtime: str = runtime_field("eager")


@dataclass
class DistillConfig(TrainConfig):
    """The student, its input and the distillation target; batching, precision and optimisation as for fine-tuning."""

    model: str = field(
        default="r2plus1d_18",
        metadata=dict(help="registry architecture of the student", deprecated=("--student",)),
    )
    model_args: Dict[str, Any] = field(
        default_factory=dict,
        metadata=dict(
            parse=parse_json_object, help=MODEL_ARGS_HELP, deprecated=("--student-args",)
        ),
    )
    modality: Literal["rgb", "flow", "gray_diff"] = field(
        default="rgb",
        metadata=dict(
            help="the student's input: RGB, optical flow of the clip (--flow-method), or grey level and its "
            "temporal difference (a cheap stand-in for flow)"
        ),
    )
    clip: Dict[str, Any] = clip_field(help="the student's clip (default: its architecture's)", num_frames=8)
    target: Literal["center", "random", "multi"] = field(default="center", metadata=dict(help="teacher frame(s)"))
    teacher_frames: int = field(default=4, metadata=dict(help="frames averaged for --target multi", bound=at_least(1)))
    temperature: float = field(
        default=1.0, metadata=dict(help="softmax temperature of teacher and student", bound=above(0))
    )
    loss: Literal["ce", "mse"] = field(default="ce", metadata=dict(help="cross-entropy, or MSE between logits"))
    entropy_threshold: Optional[float] = field(
        default=None, metadata=dict(help="drop examples whose teacher entropy (nats) is above", bound=at_least(0))
    )
    optim: OptimConfig = field(default_factory=_distill_optim)


@dataclass
class DistillJobConfig:
    """DistInit: train a video student from image teachers on unlabelled video."""

    inputs: List[str] = field(metadata=dict(positional=True, help="video files, directories or lists (no labels)"))
    out: str = field(metadata=dict(flag=("-o", "--out"), help="checkpoints, metrics and the exported student"))
    teacher: List[str] = field(metadata=dict(help="timm model name (repeat the option for several teachers)"))
    random_teachers: bool = field(default=False, metadata=dict(help="teachers without weights (pipeline tests)"))
    settings: DistillConfig = field(default_factory=DistillConfig)


@dataclass
class ExplainJobConfig(Checked):
    """Space-time Grad-CAM of one clip of a video: which pixels and frames made the model choose a class."""

    video: str = field(metadata=dict(positional=True, help="the video"))
    out: str = field(metadata=dict(flag=("-o", "--out"), help="output folder"))
    model: ModelSource = field(default_factory=lambda: ModelSource(CLASSIFIER_MODEL))
    start: float = field(default=0.0, metadata=dict(help="the clip's start in seconds", bound=at_least(0)))
    target: Optional[str] = field(default=None, metadata=dict(help="the class to explain (default: the top class)"))
    layer: str = field(default="layer4", metadata=dict(help="the stage: stem, layer1-4 or 0-4 (layer3 is finer)"))
    clip: Dict[str, Any] = clip_field()
    decoder: str = field(default=DEFAULT_DECODER, metadata=dict(help="video decoding decoder", choices=DECODERS))
    device: Optional[str] = device_field()


@dataclass
class ExtractJobConfig(Checked):
    """Extract clip features of many videos (resumable; torchrun or --shard-id/--num-shards to scale out). Clip
    settings default to the weights' config (frames, fps, resize, crop, mean/std)."""

    out: str = field(metadata=dict(flag=("-o", "--out"), help="output directory"))
    inputs: List[str] = field(
        default_factory=list,
        metadata=dict(positional=True, help="video files, directories (recursive) or .txt/.csv lists of paths"),
    )
    data: Optional[str] = field(
        default=None,
        metadata=dict(help=DATA_HELP),
    )
    labels: LabelOptions = field(default_factory=LabelOptions)
    model: ModelSource = field(default_factory=ModelSource)
    settings: ExtractConfig = field(default_factory=ExtractConfig)
    format: str = field(default="npy", metadata=dict(help="feature file format", choices=FEATURE_FORMAT_NAMES))
    dtype: Literal["float32", "float16"] = field(default="float32", metadata=dict(help="stored feature dtype"))
    decoder: str = field(default=DEFAULT_DECODER, metadata=dict(help="video decoding decoder", choices=DECODERS))
    workers: int = workers_field()
    device: Optional[str] = device_field()
    amp: InferenceAmp = field(default="auto", metadata=dict(help=INFERENCE_AMP_HELP))
    channels_last: Optional[bool] = field(default=None, metadata=dict(help=CHANNELS_LAST_HELP))
    runtime: str = runtime_field(deprecated_switch={"--optimize": "torch"})  # --optimize: the 0.x switch for torch
    calibration_clips: int = field(
        default=32,
        metadata=dict(help="int8: clips to calibrate on (as many more check it against float32)", bound=at_least(1)),
    )
    force_int8: bool = field(
        default=False, metadata=dict(help="int8: keep int8 features that agree with float32 less than required")
    )
    engine: Literal["local", "ray"] = field(
        default="local",
        metadata=dict(
            help="local: this process with --workers decoding processes; ray: decode tasks and model actors on a Ray "
            "cluster (needs the ray extra)"
        ),
    )
    address: Optional[str] = field(
        default=None,
        metadata=dict(
            help="--engine ray: the cluster to join (default RAY_ADDRESS, else one started here)", metavar="HOST:PORT"
        ),
    )
    shard_id: Optional[int] = field(
        default=None,
        metadata=dict(
            help="this job's shard (default: from torchrun's or srun's ranks, and a SLURM job array's task)",
            bound=at_least(0),
        ),
    )
    num_shards: Optional[int] = field(default=None, metadata=dict(help="number of shards", bound=at_least(1)))
    overwrite: bool = field(default=False, metadata=dict(help="recompute videos that are already done"))
    seed: int = field(
        default=0, metadata=dict(help="seed of the --random-weights initialisation (recorded)", bound=at_least(0))
    )
    extensions: str = field(default=",".join(VIDEO_EXTENSIONS), metadata=dict(help="comma-separated, for folders"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.address and self.engine != "ray":
            raise UsageError(f"--address {self.address} names a Ray cluster: add --engine ray")
        if self.amp == INT8 and self.runtime not in ("onnxruntime", "auto"):
            raise UsageError(f"--amp int8 runs on --runtime onnxruntime (or auto), not on --runtime {self.runtime}")
        if self.shard_id is not None and self.shard_id >= (self.num_shards or 1):
            raise UsageError(
                f"--shard-id {self.shard_id}: must be below --num-shards ({self.num_shards or 1}); shards count from 0"
            )


MODES = ("full", "fc")


VAL_METRICS = ("video_top1", "video_top5", "clip_top1", "clip_top5", "mAP")


def _finetune_optim() -> OptimConfig:
    return OptimConfig(epochs=8, warmup_epochs=1, step_epochs=4)


@dataclass
class FinetuneConfig(TrainConfig):
    """Fine-tune a model on labelled clips (full or fc-only) and evaluate it every epoch."""

    model: ModelSource = field(default_factory=ModelSource)
    mode: Literal["full", "fc"] = field(default="full", metadata=dict(help="fc: train only the classifier"))
    freeze_stages: int = field(
        default=0, metadata=dict(help="freeze the stem (1) and the first layers (2-5)", bound=between(0, 5))
    )
    freeze_bn: bool = field(default=False, metadata=dict(help="keep BatchNorm statistics and affine frozen"))
    backbone_lr_mult: float = field(
        default=1.0, metadata=dict(help="LR factor for all but the classifier", bound=at_least(0))
    )
    flip: bool = field(default=True, metadata=dict(help=FLIP_HELP))
    jitter_scales: Optional[Tuple[int, int]] = field(
        default=None,
        metadata=dict(
            help="scale jitter: each training clip's short side drawn from LOW HIGH before the crop (VMZ: 128 160)",
            metavar="SIDE",
            bound=at_least(1),
        ),
    )
    mixup_alpha: float = field(
        default=0.0, metadata=dict(help="mixup of training batches, Beta(alpha, alpha) (0: off)", bound=at_least(0))
    )
    cutmix_alpha: float = field(
        default=0.0, metadata=dict(help="CutMix of training batches, Beta(alpha, alpha) (0: off)", bound=at_least(0))
    )
    num_clips: int = field(
        default=10,
        metadata=dict(
            help="uniformly spaced clips per validation video", deprecated=("--eval-clips",), bound=at_least(1)
        ),
    )
    stop_on_unreadable: bool = field(
        default=False, metadata=dict(help="stop when a validation video cannot be read (default: count and warn)")
    )
    clip: Dict[str, Any] = clip_field(help="clip settings (default: the weights'); --crop is the evaluation crop")
    optim: OptimConfig = field(default_factory=_finetune_optim)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.jitter_scales is not None and (
            len(self.jitter_scales) != 2 or self.jitter_scales[0] > self.jitter_scales[1]
        ):
            raise UsageError(
                f"--jitter-scales {' '.join(map(str, self.jitter_scales))}: must be two short sides, the smallest "
                "first (e.g. --jitter-scales 128 160)"
            )
        if self.jitter_scales is not None:
            self.jitter_scales = (int(self.jitter_scales[0]), int(self.jitter_scales[1]))


@dataclass
class FinetuneJobConfig:
    """Fine-tune on labelled clips (full or fc-only), evaluating every epoch; writes best/, final/, last.pt, metrics."""

    train: str = field(metadata=dict(help=TRAIN_HELP))
    out: str = field(metadata=dict(flag=("-o", "--out"), help="checkpoints, metrics, curves.png and the models"))
    val: Optional[str] = field(default=None, metadata=dict(help="validation split in the same formats"))
    labels: LabelOptions = field(default_factory=LabelOptions)
    settings: FinetuneConfig = field(default_factory=FinetuneConfig)


DEFAULT_FLOW_WEIGHT = 0.5


def flow_weight_field() -> Any:
    return field(
        default=None,
        metadata=dict(
            help=f"with --flow-model: the flow stream's share of the fused scores (default {DEFAULT_FLOW_WEIGHT})",
            bound=between(0, 1),
        ),
    )


def check_flow_weight(cfg: Any) -> None:
    """A fusion weight without a flow model to fuse is a usage error (it was once ignored without a word)."""
    if cfg.flow_weight is not None and not cfg.flow_model:
        raise UsageError("--flow-weight weighs the --flow-model stream: give --flow-model too, or drop --flow-weight")


class FlowFusion:
    """What a command fusing an RGB and a --flow-model stream reads of its settings."""

    flow_weight: Optional[float]

    @property
    def fusion_weight(self) -> float:
        return DEFAULT_FLOW_WEIGHT if self.flow_weight is None else self.flow_weight


@dataclass
class EvaluateJobConfig(Checked, FlowFusion):
    """Clip- and video-level accuracy (or mAP) of a model on labelled videos."""

    data: str = field(metadata=dict(help=DATA_HELP))
    model: ModelSource = field(default_factory=lambda: ModelSource(CLASSIFIER_MODEL))
    flow_model: Optional[str] = field(
        default=None,
        metadata=dict(help=FLOW_MODEL_HELP),
    )
    flow_weight: Optional[float] = flow_weight_field()
    num_clips: Optional[int] = field(
        default=None,
        metadata=dict(
            help="uniformly spaced clips per video (default: the published protocol's on its dataset, else 10)",
            bound=at_least(1),
        ),
    )
    clip: Dict[str, Any] = clip_field()
    labels: LabelOptions = field(default_factory=LabelOptions)
    output: Optional[str] = field(
        default=None,
        metadata=dict(help="write the full results (per class, confusion, top confusions) here, and beside it "
                      "NAME.confusion.png and NAME.per_class.png"),
    )
    save_scores: Optional[str] = field(
        default=None, metadata=dict(help="write every video's scores and top classes here (JSON lines)")
    )
    workers: int = workers_field()
    device: Optional[str] = device_field()
    amp: Amp = field(default="auto", metadata=dict(help=AMP_HELP))
    runtime: str = runtime_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_flow_weight(self)


@dataclass
class PredictJobConfig(Checked, FlowFusion):
    """The video-level top-k and a timeline (top-k per window) of each video: printed, and with -o written as JSON,
    CSV and SRT/WebVTT subtitles, with --plot a picture of the scores over time, with --annotate the labelled video."""

    inputs: List[str] = field(
        default_factory=list, metadata=dict(positional=True, help="video files, folders (recursive) or .txt/.csv lists")
    )
    model: ModelSource = field(default_factory=lambda: ModelSource(CLASSIFIER_MODEL))
    flow_model: Optional[str] = field(
        default=None, metadata=dict(help=FLOW_MODEL_HELP)
    )
    flow_weight: Optional[float] = flow_weight_field()
    settings: PredictConfig = field(default_factory=PredictConfig)
    out: Optional[str] = field(default=None, metadata=dict(flag=("-o", "--out"), help="output folder"))
    outputs: str = field(default=",".join(OUTPUTS), metadata=dict(help="what to write to -o, comma-separated"))
    plot: bool = field(default=False, metadata=dict(help="also write OUT/NAME.png: the top classes' scores over time"))
    annotate: bool = field(
        default=False, metadata=dict(help="also write OUT/NAME.annotated.mp4: the video with the current labels drawn")
    )
    explain: bool = field(
        default=False,
        metadata=dict(help="also write the Grad-CAM of the video's top class on its best window (see `explain`)"),
    )
    layer: str = field(default="layer4", metadata=dict(help="--explain: the stage (stem, layer1-4 or 0-4)"))
    live: Optional[str] = field(
        default=None,
        metadata=dict(
            help="classify a live source as it arrives instead of files: /dev/videoN, FORMAT:DEVICE (avfoundation:0), "
            "an rtsp/rtmp/http(s)/udp/tcp/srt URL, or - for a stream on standard input; -o gets live.jsonl/srt/vtt",
            metavar="SOURCE",
        ),
    )
    reconnect: int = field(
        default=3,
        metadata=dict(
            help="--live: attempts in a row to reopen a network source that drops", bound=at_least(0), metavar="N"
        ),
    )
    decoder: str = field(default=DEFAULT_DECODER, metadata=dict(help="video decoding decoder", choices=DECODERS))
    frames_fps: Optional[float] = frames_fps_field()
    device: Optional[str] = device_field()
    runtime: str = runtime_field()
    extensions: str = field(default=",".join(VIDEO_EXTENSIONS), metadata=dict(help="comma-separated, for folders"))

    def __post_init__(self) -> None:
        super().__post_init__()
        check_flow_weight(self)
        if self.live is not None:
            given = [flag for flag, on in (("video inputs", self.inputs), ("--annotate", self.annotate),
                                           ("--explain", self.explain), ("--flow-model", self.flow_model),
                                           ("--smooth", self.settings.smooth > 1)) if on]  # fmt: skip
            if given:
                raise UsageError(
                    f"--live classifies windows as they arrive: {', '.join(given)} cannot go with it (a centred "
                    "average and the other outputs need the whole video); predict files for those"
                )
        if (self.plot or self.annotate or self.explain) and not self.out:
            raise UsageError("--plot, --annotate and --explain write into the output folder: give -o OUT")
        unknown = [k for k in self.output_kinds if k not in OUTPUTS]
        if unknown:
            raise UsageError(f"--outputs {unknown[0]}: unknown; choose from {','.join(OUTPUTS)}")

    @property
    def output_kinds(self) -> List[str]:
        return [k.strip() for k in self.outputs.split(",") if k.strip()]


@dataclass
class PretrainConfig(TrainConfig):
    """The model, the labels' loss and sampling, and the schedule in clips; batching and precision as elsewhere."""

    model: str = field(
        default="r2plus1d_34",
        metadata=dict(help="registry architecture, randomly initialised", deprecated=("--arch",)),
    )
    model_args: Dict[str, Any] = field(
        default_factory=dict, metadata=dict(parse=parse_json_object, help=MODEL_ARGS_HELP)
    )
    clip: Dict[str, Any] = clip_field(help="clip settings (default: the architecture's, 8 frames)", num_frames=8)
    loss: Literal["softmax", "sample-one", "sigmoid"] = field(
        default="softmax", metadata=dict(help="softmax vs the normalised label vector, one sampled label, or sigmoid")
    )
    sampling: Literal["natural", "sqrt", "uniform"] = field(
        default="sqrt",
        metadata=dict(help="each label's share of the clips ~ count, sqrt(count) or 1", deprecated=("--policy",)),
    )
    shuffle_buffer: int = field(
        default=64, metadata=dict(help="items shuffled per loader stream (raw bytes)", bound=at_least(1))
    )
    flip: bool = field(default=True, metadata=dict(help=FLIP_HELP))
    checkpoint_every: int = field(
        default=1_000_000, metadata=dict(help="clips between checkpoints and metrics", bound=at_least(1))
    )
    sync_bn: bool = field(default=False, metadata=dict(help="SyncBatchNorm under DDP (default: per-GPU statistics)"))
    optim: SampleOptimConfig = field(default_factory=ig65m_schedule)


@dataclass
class PretrainJobConfig:
    """Pre-train on WebDataset shards of labelled videos (the IG-65M recipe); writes last.pt, metrics and final/."""

    shards: str = field(metadata=dict(positional=True, help="packed folder, index.json, or shard URL/brace pattern"))
    out: str = field(metadata=dict(flag=("-o", "--out"), help="checkpoints, metrics, curves.png and final/"))
    stats: Optional[str] = field(default=None, metadata=dict(help="label counts from `shards stats -o` (JSON)"))
    include: Optional[str] = field(default=None, metadata=dict(help=INCLUDE_HELP))
    exclude: Optional[str] = field(default=None, metadata=dict(help="leave out these keys (`r21d-zoo dedup`)"))
    settings: PretrainConfig = field(default_factory=PretrainConfig)


@dataclass
class ProbeJobConfig:
    """Linear probe (logistic regression) on features written by r21d-zoo extract."""

    train: str = field(metadata=dict(help=TRAIN_HELP))
    test: str = field(metadata=dict(help="labelled test videos"))
    train_features: str = field(metadata=dict(help="feature directory of the training videos"))
    test_features: Optional[str] = field(default=None, metadata=dict(help="feature directory of the test videos"))
    labels: LabelOptions = field(default_factory=LabelOptions)


@dataclass
class ServeConfig(Checked):
    """A web page where a person uploads or picks a video and sees the top-5, the timeline plot and, on request, the
    Grad-CAM of the top class (needs the serve extra: pip install 'r21d-zoo[serve]')."""

    examples: List[str] = field(
        default_factory=list,
        metadata=dict(positional=True, help="videos to offer on the page (files, folders or .txt/.csv lists)"),
    )
    model: ModelSource = field(default_factory=lambda: ModelSource(CLASSIFIER_MODEL))
    settings: PredictConfig = field(default_factory=PredictConfig)
    layer: str = field(default="layer4", metadata=dict(help="Grad-CAM's stage (stem, layer1-4 or 0-4)"))
    host: str = field(default="127.0.0.1", metadata=dict(help="address to listen on (0.0.0.0: every interface)"))
    port: int = field(default=7860, metadata=dict(help="port to listen on", bound=between(1, 65535)))
    device: Optional[str] = device_field()
    runtime: str = runtime_field()


@dataclass
class PackConfig(Checked):
    """Pack labelled videos (a CSV, list or class folders; one or several labels each) into WebDataset shards."""

    source: str = field(metadata=dict(positional=True, help="CSV, split list or class-folder tree"))
    out: str = field(metadata=dict(flag=("-o", "--out"), help="output folder for the shards and index.json"))
    shard_mb: float = field(default=1000.0, metadata=dict(help="target shard size in MB", bound=above(0)))
    max_per_shard: int = field(
        default=10000, metadata=dict(help="at most this many videos per shard", bound=at_least(1))
    )
    labels: LabelOptions = field(default_factory=LabelOptions)


@dataclass
class StatsConfig:
    """Count videos per label over shards (one pass over their json members); writes the counts sampling needs."""

    shards: str = field(metadata=dict(positional=True, help="packed folder, index.json, or shard URL/brace pattern"))
    out: Optional[str] = field(default=None, metadata=dict(flag=("-o", "--out"), help="write the stats as JSON"))
    include: Optional[str] = field(default=None, metadata=dict(help=INCLUDE_HELP))
    exclude: Optional[str] = field(default=None, metadata=dict(help="leave out these keys (`r21d-zoo dedup`)"))


@dataclass
class SubsetConfig(Checked):
    """Choose N videos keeping every video of the rarest labels (tail-preserving); writes their keys, one per line."""

    shards: str = field(metadata=dict(positional=True, help="packed folder, index.json, or shard URL/brace pattern"))
    n: int = field(metadata=dict(flag=("-n", "--n"), help="videos in the subset", bound=at_least(1)))
    out: str = field(metadata=dict(flag=("-o", "--out"), help="key list to write (pretrain --include)"))
    seed: int = field(default=0, metadata=dict(help="which head-label videos are kept", bound=at_least(0)))
    exclude: Optional[str] = field(default=None, metadata=dict(help="never choose these keys (`r21d-zoo dedup`)"))


@dataclass
class SyntheticConfig(Checked):
    """Write the synthetic motion-direction dataset (videos plus train.csv / val.csv)."""

    out: str = field(metadata=dict(positional=True, help="output folder"))
    videos_per_class: int = field(default=24, metadata=dict(help="training videos per class", bound=at_least(1)))
    val_per_class: int = field(default=8, metadata=dict(help="validation videos per class", bound=at_least(0)))
    frames: int = field(default=16, metadata=dict(help="frames per video", bound=at_least(1)))
    size: int = field(default=64, metadata=dict(help="frame side in pixels, a multiple of 4", bound=at_least(8)))
    seed: int = field(default=0, metadata=dict(help="random seed", bound=at_least(0)))
    directions: List[Direction] = field(default_factory=lambda: ["left", "right"], metadata=dict(help="classes"))
    smallest: Optional[int] = field(
        default=None,
        metadata=dict(help="long-tailed: training videos fall from --videos-per-class to this", bound=at_least(1)),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.size % 4:
            raise UsageError(f"--size {self.size}: must be a multiple of 4 (e.g. {self.size // 4 * 4 + 4})")
        from ..data.synthetic import MOTION_SPEED

        if (self.frames - 1) * MOTION_SPEED > self.size // 2:
            raise UsageError(
                f"--frames {self.frames} do not fit in --size {self.size}: the square moves {MOTION_SPEED} px a frame "
                f"over half the frame; use --size {4 * -(-(self.frames - 1) * MOTION_SPEED // 2)} or fewer frames"
            )
