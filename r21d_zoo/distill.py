"""DistInit (Girdhar et al. 2019): train a video student to match image teachers' per-frame predictions on
unlabelled video, which initialises video architectures with no 2D counterpart, such as R(2+1)D.

Per batch: each teacher (eval mode, frozen) sees RGB frame(s) of the clip — the centre frame, a random frame, or
several random frames whose logits are averaged before the softmax — and gives a distribution ``softmax(z / T)``.
The student (any registry architecture; its input may be another modality computed from the same clip) has one
linear head per teacher on its pooled features; the loss is the cross-entropy to the teacher distribution (or the
MSE between logits), summed over teachers. Examples where a teacher's distribution has entropy above
``entropy_threshold`` (nats) are dropped from that teacher's loss. Training is resumable (``last.pt`` in the output
directory), runs under ``torchrun`` (DDP) and exports the student with ``save_pretrained`` so that
``create_model("local-dir:OUT/student")`` loads it and fine-tuning continues from it.
"""

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from .data import ClipSpec, LabelledVideos, Sample, TrainClips
from .distributed import WorldInfo, default_device, init_distributed
from .models import create_model, save_pretrained
from .train import (
    OptimConfig,
    autocast,
    build_optimizer,
    build_scheduler,
    epoch_seed,
    resume_training_state,
    save_training_state,
    unwrap,
    wrap_ddp,
)
from .transforms import VideoClassificationTransform, normalize

_logger = logging.getLogger(__name__)
TARGETS = ("centre", "random", "multi")
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

            teacher = timm.create_model(teacher, pretrained=pretrained)
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
    """Frame indices per clip (B, n) for ``centre`` (n=1), ``random`` (n=1) or ``multi`` (n=``num_frames``)."""
    b, t = clips.shape[:2]
    if target == "centre":
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

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)
        return [self.backbone.fc(feats)] + [head(feats) for head in self.extra_heads]


def gray_diff_input(transform: VideoClassificationTransform) -> Callable[[torch.Tensor], torch.Tensor]:
    """A 2-channel motion modality computed from the RGB clip: grey level and its temporal difference (a cheap
    stand-in for optical flow; a real flow student plugs in its own function)."""

    def make(clips: torch.Tensor) -> torch.Tensor:
        x = transform(clips)  # B, 3, T, H, W normalised
        grey = x.mean(1, keepdim=True)
        diff = torch.cat([torch.zeros_like(grey[:, :, :1]), grey[:, :, 1:] - grey[:, :, :-1]], 2)
        return torch.cat([grey, diff], 1)

    return make


MODALITIES = {"rgb": (3, lambda transform: transform), "gray_diff": (2, gray_diff_input)}


@dataclass
class DistillConfig:
    student: str = "r2plus1d_18"
    student_args: Dict[str, Any] = field(default_factory=dict)
    modality: str = "rgb"
    num_frames: int = 8
    frame_rate: Optional[float] = None
    sampling_stride: int = 1
    resize_size: Union[int, Tuple[int, int]] = (128, 171)
    crop_size: int = 112
    target: str = "centre"
    teacher_frames: int = 4  # for target="multi"
    temperature: float = 1.0
    loss: str = "ce"
    entropy_threshold: Optional[float] = None  # nats; log(num_classes) is the uniform distribution's
    batch_size: int = 8
    workers: int = 0
    amp: Optional[str] = "bf16"  # GPU only
    seed: int = 0
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=0.1, reference_batch=256, epochs=10, warmup_epochs=1, schedule="cosine")
    )


@dataclass
class DistillResult:
    student: nn.Module
    history: List[Dict[str, float]]
    export_dir: Optional[Path]


def distill(
    videos: Sequence[str],
    teachers: Sequence[Union[str, nn.Module, TeacherSpec]],
    cfg: DistillConfig,
    out_dir: Union[str, Path, None] = None,
    device: Union[str, torch.device, None] = None,
    world: Optional[WorldInfo] = None,
    stop_after_epochs: Optional[int] = None,
    progress: bool = True,
) -> DistillResult:
    """Distil ``teachers`` into a new ``cfg.student`` on unlabelled ``videos``. With ``out_dir`` it checkpoints every
    epoch to ``out_dir/last.pt`` (and resumes from it), writes ``metrics.jsonl`` and exports ``out_dir/student``.
    ``stop_after_epochs`` ends the run early (to test resuming)."""
    if cfg.target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {cfg.target!r}")
    if cfg.modality not in MODALITIES:
        raise ValueError(f"modality must be one of {list(MODALITIES)}, got {cfg.modality!r}")
    world = world or init_distributed()
    device = default_device(world, device)
    torch.manual_seed(cfg.seed)
    specs = [TeacherSpec.create(t) for t in teachers]
    for s in specs:
        s.model.eval().requires_grad_(False).to(device)
    in_chans, make_input = MODALITIES[cfg.modality]
    backbone = create_model(cfg.student, num_classes=specs[0].num_classes, in_chans=in_chans, **cfg.student_args)
    backbone.pretrained_cfg.update(
        in_chans=in_chans,
        input_size=(in_chans, cfg.num_frames, cfg.crop_size, cfg.crop_size),
        num_frames=cfg.num_frames,
        frame_rate=cfg.frame_rate,
        resize_size=cfg.resize_size,
        crop_size=cfg.crop_size,
        sampling_stride=cfg.sampling_stride,
        label_names=None,
        notes=f"DistInit student of {[s.name for s in specs]}",
    )
    student = Student(backbone, [s.num_classes for s in specs[1:]]).to(device)
    transform = VideoClassificationTransform(
        cfg.resize_size, cfg.crop_size, backbone.pretrained_cfg["mean"], backbone.pretrained_cfg["std"]
    ).to(device)
    student_input = make_input(transform)

    unlabelled = LabelledVideos([Sample(str(v), (0,)) for v in videos], ["unlabelled"])
    dataset = TrainClips(
        unlabelled, ClipSpec(cfg.num_frames, cfg.frame_rate, cfg.sampling_stride, cfg.resize_size), cfg.seed
    )
    sampler = DistributedSampler(dataset, world.world_size, world.rank, shuffle=True, seed=cfg.seed, drop_last=True)
    loader = DataLoader(
        dataset,
        cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
    )
    if len(loader) == 0:
        raise ValueError(f"{len(videos)} videos are fewer than one batch of {cfg.batch_size} per process")
    lr = cfg.optim.scaled_lr(cfg.batch_size, world.world_size)
    optimizer = build_optimizer({"student": (student.parameters(), lr)}, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, len(loader))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.amp == "fp16")
    model = wrap_ddp(student, world, device)
    out = Path(out_dir) if out_dir is not None else None
    history: List[Dict[str, float]] = []
    start_epoch = 0
    state = resume_training_state(out / "last.pt", student, optimizer, scheduler, scaler) if out else None
    if state is not None:
        start_epoch, history = state["epoch"], state["history"]
        _logger.info("resumed from %s at epoch %d", out / "last.pt", start_epoch)
    from tqdm.auto import tqdm

    end_epoch = cfg.optim.epochs if stop_after_epochs is None else min(cfg.optim.epochs, stop_after_epochs)
    for epoch in range(start_epoch, end_epoch):
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        frame_gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, 10**6 + world.rank))
        model.train()
        totals = dict(loss=0.0, examples=0, kept=[0] * len(specs), clips_per_s=0.0)
        t0 = time.perf_counter()
        bar = tqdm(
            loader,
            desc=f"distill {epoch + 1}/{cfg.optim.epochs}",
            leave=False,
            disable=not (progress and world.is_primary and sys.stderr.isatty()),
        )
        for clips, _ in bar:
            clips = clips.to(device, non_blocking=True)
            idx = teacher_frames(clips, cfg.target, cfg.teacher_frames, frame_gen)
            with torch.no_grad(), autocast(device, cfg.amp):
                targets = [
                    s.model(teacher_input(clips, idx.to(device), s)).float().view(len(clips), idx.shape[1], -1).mean(1)
                    for s in specs
                ]  # logits averaged over frames before the softmax
            with autocast(device, cfg.amp):
                outputs = model(student_input(clips))
            loss = clips.new_zeros((), dtype=torch.float32)
            for k, (out_k, t_k) in enumerate(zip(outputs, targets)):
                l_k, keep = distill_loss(out_k, t_k, cfg.loss, cfg.temperature, cfg.entropy_threshold)
                loss = loss + l_k
                totals["kept"][k] += int(keep.sum())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            totals["loss"] += float(loss.detach()) * len(clips)
            totals["examples"] += len(clips)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{scheduler.get_last_lr()[0]:.3g}")
        seconds = time.perf_counter() - t0
        record = dict(
            epoch=epoch + 1,
            loss=totals["loss"] / max(1, totals["examples"]),
            examples=totals["examples"],
            kept_fraction=[k / max(1, totals["examples"]) for k in totals["kept"]],
            clips_per_s=totals["examples"] / max(seconds, 1e-9),
            lr=scheduler.get_last_lr()[0],
        )
        history.append(record)
        _logger.info("epoch %d: %s", epoch + 1, record)
        if out is not None and world.is_primary:
            save_training_state(
                out / "last.pt", student, optimizer, scheduler, scaler, epoch=epoch + 1, history=history, config=cfg
            )
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
    export = None
    if out is not None and world.is_primary and end_epoch == cfg.optim.epochs:
        export = out / "student"
        save_pretrained(unwrap(model).backbone, export)
    return DistillResult(unwrap(model), history, export)


def main(argv: Optional[List[str]] = None) -> int:
    """``r21d-zoo distill`` (see ``r21d_zoo.cli``)."""
    from .cli import main as cli_main

    return cli_main(["distill", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
