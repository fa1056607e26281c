"""The settings of the train layer (what every training job shares, the optimiser and its schedules), importable
without torch so the command line can describe them at once."""

from dataclasses import dataclass, field
from typing import List, Literal, Optional

from .._bounds import Bound, Checked, above, at_least, between
from .._options import AMP_HELP, Amp, channels_last_field, device_field, workers_field


@dataclass
class SGDConfig(Checked):
    """SGD with momentum. ``lr`` is per ``reference_batch`` clips; the run uses ``lr * global_batch /
    reference_batch`` (linear scaling with batch and world size, as VMZ and Goyal et al.)."""

    lr: float = field(
        default=0.01, metadata=dict(help="learning rate per --reference-batch clips (scaled linearly)", bound=above(0))
    )
    reference_batch: int = field(
        default=64, metadata=dict(help="global batch the learning rate is given for", bound=at_least(1))
    )
    momentum: float = field(default=0.9, metadata=dict(help="SGD momentum", bound=between(0, 1, high_open=True)))
    weight_decay: float = field(
        default=1e-4, metadata=dict(help="L2 weight decay (not on BN and biases)", bound=at_least(0))
    )

    def scaled_lr(self, batch_size: int, world_size: int = 1, accumulation: int = 1) -> float:
        return self.lr * batch_size * world_size * accumulation / self.reference_batch


@dataclass
class OptimConfig(SGDConfig):
    """The scaled LR warmed up linearly over ``warmup_epochs``, then decayed by ``gamma`` every ``step_epochs``
    (``schedule="step"``) or to zero (``"cosine"``)."""

    epochs: int = field(default=10, metadata=dict(help="training epochs", bound=at_least(1)))
    warmup_epochs: float = field(default=0.0, metadata=dict(help="linear warmup length in epochs", bound=at_least(0)))
    schedule: Literal["step", "cosine"] = field(default="step", metadata=dict(help="decay after the warmup"))
    step_epochs: int = field(
        default=10, metadata=dict(help="step schedule: decay every this many epochs", bound=at_least(1))
    )
    gamma: float = field(
        default=0.1, metadata=dict(help="step schedule: decay factor", bound=Bound(0, 1, low_open=True))
    )


@dataclass
class SampleOptimConfig(SGDConfig):
    """The IG-65M schedule, measured in samples processed instead of epochs: the scaled LR warmed up linearly over
    ``warmup_samples``, then halved ``halvings`` times at equal intervals (the rest of the run in ``halvings + 1``
    equal parts). The length, warmup and halvings default to the paper's; :func:`ig65m_schedule` adds its LR."""

    samples: int = field(
        default=490_000_000, metadata=dict(help="training length in clips processed (all ranks)", bound=at_least(1))
    )
    warmup_samples: int = field(
        default=10_000_000, metadata=dict(help="linear warmup length in clips", bound=at_least(0))
    )
    halvings: int = field(
        default=13, metadata=dict(help="times the LR is halved, at equal intervals", bound=at_least(0))
    )


@dataclass
class TrainConfig(Checked):
    """What every training job shares: batching, precision and memory options, distribution, seed and optimisation."""

    batch_size: int = field(default=8, metadata=dict(help="clips per process per step", bound=at_least(1)))
    accumulation: int = field(
        default=1, metadata=dict(help="gradient accumulation steps per optimizer step", bound=at_least(1))
    )
    workers: int = workers_field()
    device: Optional[str] = device_field()
    amp: Optional[Amp] = field(default="auto", metadata=dict(help=AMP_HELP))
    channels_last: Optional[bool] = channels_last_field()
    grad_checkpointing: bool = field(default=False, metadata=dict(help="recompute activations: less memory"))
    sync_bn: bool = field(default=True, metadata=dict(help="SyncBatchNorm under DDP on GPU"))
    seed: int = field(
        default=0, metadata=dict(help="seed of initialisation, clip choice and augmentation", bound=at_least(0))
    )
    log_to: List[Literal["tensorboard", "wandb"]] = field(
        default_factory=list,
        metadata=dict(
            help="also log the run to TensorBoard and/or W&B (optional extras; W&B offline unless WANDB_MODE)"
        ),
    )
    optim: OptimConfig = field(default_factory=OptimConfig)


def ig65m_schedule() -> SampleOptimConfig:
    """The paper's pre-training schedule: 0.192 for 128 GPUs x 16 clips, over 490M clips with 13 halvings."""
    return SampleOptimConfig(lr=0.192, reference_batch=2048)
