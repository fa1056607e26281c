"""DistInit (Girdhar et al. 2019): train a video student to match image teachers' per-frame predictions on
unlabelled video, which initialises video architectures with no 2D counterpart, such as R(2+1)D.

Per batch: each teacher (eval mode, frozen) sees RGB frame(s) of the clip — the centre frame, a random frame, or
several random frames whose logits are averaged before the softmax — and gives a distribution ``softmax(z / T)``.
The student (any registry architecture) sees the clip as RGB, as optical flow computed from the same frames
(``modality="flow"``, the paper's flow students: Farneback or RAFT, normalised like the VMZ flow weights, and
recorded in the student's clip so that every job feeds it flow), or as a cheap grey-level difference; it has one
linear head per teacher on its pooled features; the loss is the cross-entropy to the teacher distribution (or the
MSE between logits), summed over teachers. Examples where a teacher's distribution has entropy above
``entropy_threshold`` (nats) are dropped from that teacher's loss. Training is resumable (``last.pt`` in the output
directory), runs under ``torchrun`` (DDP) on the shared loop (:func:`r21d_zoo.train.loop.fit`: accumulation,
channels_last, gradient checkpointing, metrics) and exports the student with ``save_pretrained`` so that
``create_model("local-dir:OUT/student")`` loads it and fine-tuning continues from it.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..deploy import save_pretrained
from ..models import FLOW_MEAN, FLOW_STD, ClipSpec, WeightsError, set_derived_cfg
from ..video import VideoClassificationTransform, normalize
from .._errors import InputError, UsageError
from .._io import writable_dir
from ..data.inputs import discover_videos
from ..data.labelled import LabelledVideos, Sample, TrainClips
from ..train.distributed import WorldInfo, default_device, init_distributed
from ..train.loop import FitResult, StepContext, StepOutput, fit
from .configs import DistillConfig as DistillConfig, DistillJobConfig as DistillJobConfig
from ..infer.config import create_with_args

_logger = logging.getLogger(__name__)
TARGETS = ("center", "random", "multi")
LOSSES = ("ce", "mse")


@dataclass
class TeacherSpec:
    """An image teacher: its module and its input spec (from timm's data config when it is a timm model)."""

    model: nn.Module
    input_size: int = 224
    mean: Tuple[float, ...] = (0.485, 0.456, 0.406)
    std: Tuple[float, ...] = (0.229, 0.224, 0.225)
    name: str = "teacher"

    @classmethod
    def create(cls, teacher: Union[str, nn.Module, "TeacherSpec"], pretrained: bool = True) -> "TeacherSpec":
        if isinstance(teacher, TeacherSpec):
            return teacher
        name = teacher if isinstance(teacher, str) else type(teacher).__name__
        if isinstance(teacher, str):
            import timm

            try:
                teacher = timm.create_model(teacher, pretrained=pretrained)
            except Exception as e:  # timm's Hub download: offline, unreachable, unknown name
                if isinstance(e, RuntimeError) and "Unknown model" in str(e):
                    raise UsageError(
                        f"--teacher {name!r} is not a timm model; timm.list_models(pretrained=True) lists them"
                    ) from e
                if not pretrained:
                    raise
                raise WeightsError(
                    f"could not load the weights of the timm teacher {name!r} ({type(e).__name__}: {e}). Offline: "
                    f"pre-populate the Hugging Face cache (HF_HOME) and set HF_HUB_OFFLINE=1, or pass "
                    f"--random-teachers (random_teachers) to test the pipeline without weights."
                ) from e
        spec = cls(teacher, name=name)
        if hasattr(teacher, "pretrained_cfg"):
            import timm.data

            data = timm.data.resolve_data_config({}, model=teacher)
            spec.input_size, spec.mean, spec.std = int(data["input_size"][-1]), tuple(data["mean"]), tuple(data["std"])
        return spec

    @property
    def num_classes(self) -> int:
        n = getattr(self.model, "num_classes", None)
        if n is None:
            with torch.no_grad():
                n = self.model(torch.zeros(1, 3, self.input_size, self.input_size)).shape[-1]
        return int(n)


def teacher_frames(clips: torch.Tensor, target: str, num_frames: int, generator: torch.Generator) -> torch.Tensor:
    """Frame indices per clip (B, n) for ``center`` (n=1), ``random`` (n=1) or ``multi`` (n=``num_frames``)."""
    b, t = clips.shape[:2]
    if target == "center":
        return torch.full((b, 1), t // 2, dtype=torch.long)
    n = 1 if target == "random" else num_frames
    return torch.randint(0, t, (b, n), generator=generator)


def teacher_input(clips: torch.Tensor, idx: torch.Tensor, spec: TeacherSpec) -> torch.Tensor:
    """The selected uint8 frames resized (bilinear, antialiased) and centre-cropped to the teacher's input size and
    normalised with its mean/std: (B * n, 3, S, S)."""
    b, n = idx.shape
    frames = clips[torch.arange(b).unsqueeze(1), idx]  # B, n, H, W, C
    x = frames.flatten(0, 1).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    scale = spec.input_size / min(h, w)
    x = F.interpolate(
        x,
        size=(max(spec.input_size, round(h * scale)), max(spec.input_size, round(w * scale))),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    top, left = (x.shape[-2] - spec.input_size) // 2, (x.shape[-1] - spec.input_size) // 2
    x = x[..., top : top + spec.input_size, left : left + spec.input_size]
    return normalize(x, spec.mean, spec.std)


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


def distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    loss: str,
    temperature: float,
    entropy_threshold: Optional[float],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(loss averaged over kept examples, keep mask). ``teacher_logits`` are already averaged over frames."""
    p = F.softmax(teacher_logits.float() / temperature, dim=-1)
    keep = torch.ones(len(p), dtype=torch.bool, device=p.device)
    if entropy_threshold is not None:
        keep = entropy(p) <= entropy_threshold
    if loss == "ce":
        per_example = -(p * F.log_softmax(student_logits.float() / temperature, dim=-1)).sum(-1)
    elif loss == "mse":
        per_example = (student_logits.float() - teacher_logits.float()).pow(2).mean(-1)
    else:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    return (per_example * keep).sum() / keep.sum().clamp_min(1), keep


class Student(nn.Module):
    """A video backbone whose own ``fc`` is the head for teacher 0, plus one extra linear head per further teacher."""

    def __init__(self, backbone: nn.Module, extra_classes: Sequence[int]):
        super().__init__()
        self.backbone = backbone
        self.extra_heads = nn.ModuleList(nn.Linear(backbone.num_features, n) for n in extra_classes)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)
        return [self.backbone.get_classifier()(feats)] + [head(feats) for head in self.extra_heads]


def gray_diff_input(transform: VideoClassificationTransform) -> Callable[[torch.Tensor], torch.Tensor]:
    """A 2-channel motion modality computed from the RGB clip: grey level and its temporal difference (a cheap
    stand-in for optical flow)."""

    def make(clips: torch.Tensor) -> torch.Tensor:
        x = transform(clips)  # B, 3, T, H, W normalised
        grey = x.mean(1, keepdim=True)
        diff = torch.cat([torch.zeros_like(grey[:, :, :1]), grey[:, :, 1:] - grey[:, :, :-1]], 2)
        return torch.cat([grey, diff], 1)

    return make


def _same(transform: VideoClassificationTransform) -> Callable[[torch.Tensor], torch.Tensor]:
    return transform


# student input: (channels, the clip fields it sets, what makes it from the clip's transform)
MODALITIES: Dict[str, Tuple[int, Dict[str, Any], Callable[..., Callable[[torch.Tensor], torch.Tensor]]]] = {
    "rgb": (3, {}, _same),
    "flow": (2, dict(modality="flow", mean=FLOW_MEAN, std=FLOW_STD), _same),
    "gray_diff": (2, {}, gray_diff_input),
}


def distill(
    videos: Sequence[str],
    teachers: Sequence[Union[str, nn.Module, TeacherSpec]],
    cfg: DistillConfig,
    out_dir: Union[str, Path, None] = None,
    world: Optional[WorldInfo] = None,
    stop_after_epochs: Optional[int] = None,
    progress: bool = True,
) -> FitResult:
    """Distil ``teachers`` into a new student ``cfg.model`` on unlabelled ``videos``. With ``out_dir`` it checkpoints
    every epoch to ``out_dir/last.pt`` (and resumes from it), writes the metrics and exports ``out_dir/student`` (the
    result's ``final_dir``). ``stop_after_epochs`` ends the run early (to test resuming)."""
    if cfg.target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {cfg.target!r}")
    if cfg.modality not in MODALITIES:
        raise ValueError(f"modality must be one of {list(MODALITIES)}, got {cfg.modality!r}")
    world = world or init_distributed()
    device = default_device(world, cfg.device)
    torch.manual_seed(cfg.seed)
    specs = [TeacherSpec.create(t) for t in teachers]
    for s in specs:
        s.model.eval().requires_grad_(False).to(device)
    in_chans, clip_fields, make_input = MODALITIES[cfg.modality]
    backbone = create_with_args(cfg.model, cfg.model_args, num_classes=specs[0].num_classes, in_chans=in_chans)
    spec = ClipSpec.from_model(backbone, **{**clip_fields, **cfg.clip})  # the teachers see its RGB frames
    set_derived_cfg(
        backbone,
        base_model=None,
        clip=spec,
        in_chans=in_chans,
        num_classes=specs[0].num_classes,
        notes=f"DistInit student ({cfg.modality} input) of the image teacher(s) {[s.name for s in specs]}, trained "
        f"on {len(videos)} unlabelled videos; its classifier predicts the first teacher's classes.",
    )
    student = Student(backbone, [s.num_classes for s in specs[1:]])
    student_input = make_input(VideoClassificationTransform.from_spec(spec).to(device))

    def step(net: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        clips = batch[0].to(ctx.device, non_blocking=True)
        idx = teacher_frames(clips, cfg.target, cfg.teacher_frames, ctx.generator)
        with torch.no_grad(), ctx.autocast():
            targets = [
                s.model(teacher_input(clips, idx.to(ctx.device), s)).float().view(len(clips), idx.shape[1], -1).mean(1)
                for s in specs
            ]  # logits averaged over frames before the softmax
        with ctx.autocast():
            outputs = net(ctx.prepare(student_input(clips)))
        loss = clips.new_zeros((), dtype=torch.float32)
        kept = {}
        for k, (out_k, t_k) in enumerate(zip(outputs, targets)):
            l_k, keep = distill_loss(out_k, t_k, cfg.loss, cfg.temperature, cfg.entropy_threshold)
            loss = loss + l_k
            kept[f"kept_fraction_{k}"] = float(keep.sum())
        return StepOutput(loss, len(clips), kept)

    def export(net: nn.Module, path: Path, record: Dict[str, Any]) -> None:
        save_pretrained(net.backbone, path)

    unlabelled = LabelledVideos([Sample(str(v), (0,)) for v in videos], ["unlabelled"])
    return fit(
        student,
        TrainClips(unlabelled, spec, cfg.seed),
        step,
        cfg,
        {"student": (student.parameters(), 1.0)},
        out_dir=out_dir,
        world=world,
        drop_last=True,
        export=export,
        final_name="student",
        config=cfg,
        stop_after_epochs=stop_after_epochs,
        progress=progress,
        desc="distill",
    )


def run(cfg: DistillJobConfig) -> int:
    videos = [v.path for v in discover_videos(cfg.inputs)]
    if not videos:
        raise InputError(f"no videos found in {' '.join(cfg.inputs)}")
    writable_dir(cfg.out)
    teachers = [TeacherSpec.create(name, pretrained=not cfg.random_teachers) for name in cfg.teacher]
    result = distill(videos, teachers, cfg.settings, out_dir=cfg.out)
    if result.final_dir is not None:
        print(f"student exported to {result.final_dir} (load with create_model('local-dir:{result.final_dir}'))")
    return 0
