"""Video ResNets: R(2+1)D, R3D, MC3, R2D, fR2D and channel-separated networks (ir-CSN, ip-CSN).

Papers:
    Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition", CVPR 2018 (arXiv 1711.11248).
    Tran et al., "Video Classification with Channel-Separated Convolutional Networks", ICCV 2019 (arXiv 1904.02811).
    Ghadiyaram et al., "Large-scale weakly-supervised pre-training for video action recognition", CVPR 2019
    (arXiv 1905.00561).

Origin: facebookresearch/VMZ (caffe2, Apache-2.0) and torchvision ``models/video/resnet.py`` (BSD-3-Clause). Module
names follow torchvision's ``VideoResNet`` (``stem.*``, ``layerL.k.convN...``, ``fc.*``), so torchvision, ig65m-pytorch
and VMZ PyTorch ``.pth`` files load strictly without remapping.

Two conventions exist for the inner width M of a (2+1)D convolution, M = floor(27*in*out / (9*in + 3*out)):
  * ``mid_width='per_conv'`` (VMZ caffe2; every released caffe2 checkpoint): M from each conv's own in/out channels,
    so bottleneck middles are 144/288/576/1152.
  * ``mid_width='per_block'`` (torchvision): M computed once per block from (inplanes, planes); needed for
    torchvision's ``r2plus1d_18`` Kinetics weights.

Weights carry their BatchNorm eps (1e-3 for everything converted from caffe2, 1e-5 for torchvision) in their
pretrained config, because a state dict cannot. Weight licences differ from the code licence: see each model card.
"""

import contextlib
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ._base import VideoModel
from ._builder import build_model_with_cfg
from ._features import feature_take_indices
from ._pretrained import FLOW_MEAN, FLOW_STD, ClipSpec, PretrainedCfg, generate_default_cfgs
from ._registry import register_model, register_model_aliases

__all__ = ["VideoResNet"]

NormLayer = Callable[[int], nn.Module]


def mid_channels(in_planes: int, out_planes: int) -> int:
    """Inner width of a (2+1)D conv that matches the parameters of a 3x3x3 conv (Tran et al. 2018, sec. 3.5)."""
    return (in_planes * out_planes * 27) // (in_planes * 9 + out_planes * 3)


# ------------------------------------------------------------------------------------------------------------------
# Conv makers: the "3x3x3-type" convolution of a block. They share one signature so blocks can take any of them.
# ------------------------------------------------------------------------------------------------------------------


class Conv3DSimple(nn.Conv3d):
    """Full 3x3x3 convolution (R3D)."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1, norm_layer: NormLayer = None):
        super().__init__(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)

    @staticmethod
    def get_downsample_stride(stride: int) -> Tuple[int, int, int]:
        return stride, stride, stride


class Conv2Plus1D(nn.Sequential):
    """(2+1)D factorisation: spatial 1x3x3 conv to ``midplanes``, BN, ReLU, then temporal 3x1x1 conv.

    x ─ Conv(1,3,3) stride (1,s,s) ─ BN ─ ReLU ─ Conv(3,1,1) stride (s,1,1) ─▶
    """

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1, norm_layer: NormLayer = None):
        super().__init__(
            nn.Conv3d(in_planes, midplanes, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
            norm_layer(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, out_planes, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False),
        )

    @staticmethod
    def get_downsample_stride(stride: int) -> Tuple[int, int, int]:
        return stride, stride, stride


class Conv3DNoTemporal(nn.Conv3d):
    """Per-frame 1x3x3 convolution (MC3 upper layers, R2D, fR2D); never strides in time."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1, norm_layer: NormLayer = None):
        super().__init__(in_planes, out_planes, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)

    @staticmethod
    def get_downsample_stride(stride: int) -> Tuple[int, int, int]:
        return 1, stride, stride


class Conv3DDepthwise(nn.Conv3d):
    """ir-CSN middle conv: one depthwise 3x3x3 conv (groups = channels)."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1, norm_layer: NormLayer = None):
        if in_planes != out_planes:
            raise ValueError(f"depthwise conv needs in_planes == out_planes, got {in_planes} and {out_planes}")
        super().__init__(in_planes, out_planes, 3, stride, 1, groups=in_planes, bias=False)

    @staticmethod
    def get_downsample_stride(stride: int) -> Tuple[int, int, int]:
        return stride, stride, stride


class IPConv3DDepthwise(nn.Sequential):
    """ip-CSN middle conv: 1x1x1 conv, BN (no ReLU), depthwise 3x3x3 conv."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1, norm_layer: NormLayer = None):
        super().__init__(
            nn.Conv3d(in_planes, out_planes, 1, bias=False),
            norm_layer(out_planes),
            nn.Conv3d(out_planes, out_planes, 3, stride, 1, groups=out_planes, bias=False),
        )

    @staticmethod
    def get_downsample_stride(stride: int) -> Tuple[int, int, int]:
        return stride, stride, stride


CONV_MAKERS: Dict[str, Type[nn.Module]] = {
    "3d": Conv3DSimple,
    "2plus1d": Conv2Plus1D,
    "2d": Conv3DNoTemporal,
    "ir_csn": Conv3DDepthwise,
    "ip_csn": IPConv3DDepthwise,
}


# ------------------------------------------------------------------------------------------------------------------
# Blocks
# ------------------------------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """conv1 (stride s) ─ BN ─ ReLU ─ conv2 ─ BN ─ (+ shortcut) ─ ReLU."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        conv_maker: Type[nn.Module],
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        mid_width: str = "per_conv",
        norm_layer: NormLayer = nn.BatchNorm3d,
    ):
        super().__init__()
        block_mid = mid_channels(inplanes, planes)
        mid1, mid2 = (block_mid, block_mid) if mid_width == "per_block" else (block_mid, mid_channels(planes, planes))
        self.conv1 = nn.Sequential(
            conv_maker(inplanes, planes, mid1, stride, norm_layer=norm_layer), norm_layer(planes), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(conv_maker(planes, planes, mid2, norm_layer=norm_layer), norm_layer(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv2[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        out += shortcut  # in place, as torchvision: one activation-sized buffer less at the peak
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1x1 ─ BN ─ ReLU ─ middle conv (stride s) ─ BN ─ ReLU ─ 1x1x1 (x4) ─ BN ─ (+ shortcut) ─ ReLU."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        conv_maker: Type[nn.Module],
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        mid_width: str = "per_conv",
        norm_layer: NormLayer = nn.BatchNorm3d,
    ):
        super().__init__()
        mid = mid_channels(inplanes, planes) if mid_width == "per_block" else mid_channels(planes, planes)
        self.conv1 = nn.Sequential(
            nn.Conv3d(inplanes, planes, 1, bias=False), norm_layer(planes), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(
            conv_maker(planes, planes, mid, stride, norm_layer=norm_layer), norm_layer(planes), nn.ReLU(inplace=True)
        )
        self.conv3 = nn.Sequential(
            nn.Conv3d(planes, planes * self.expansion, 1, bias=False), norm_layer(planes * self.expansion)
        )
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.conv3(self.conv2(self.conv1(x)))
        out += shortcut
        return self.relu(out)


BLOCKS: Dict[str, Type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


# ------------------------------------------------------------------------------------------------------------------
# Stems (index 0 is always the first conv; an optional max-pool, "pool1", is appended last and has no weights)
# ------------------------------------------------------------------------------------------------------------------


def _pool1() -> nn.Module:
    return nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))


class R2Plus1dStem(nn.Sequential):
    """(2+1)D stem: Conv(1,7,7) to 45 channels ─ BN ─ ReLU ─ Conv(3,1,1) ─ BN ─ ReLU. The 45 is VMZ's fixed width."""

    def __init__(self, in_chans: int, width: int, norm_layer: NormLayer, pool1: bool, mid: int = 45):
        layers = [
            nn.Conv3d(in_chans, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
            norm_layer(mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, width, (3, 1, 1), 1, (1, 0, 0), bias=False),
            norm_layer(width),
            nn.ReLU(inplace=True),
        ]
        super().__init__(*layers, *([_pool1()] if pool1 else []))


class BasicStem(nn.Sequential):
    """3D stem Conv(kt,7,7) ─ BN ─ ReLU. ``kt=3`` for R3D/MC/CSN, 1 for fR2D, the clip length for R2D (no padding)."""

    def __init__(self, in_chans: int, width: int, norm_layer: NormLayer, pool1: bool, kt: int = 3, pad_t: int = 1):
        layers = [
            nn.Conv3d(in_chans, width, (kt, 7, 7), (1, 2, 2), (pad_t, 3, 3), bias=False),
            norm_layer(width),
            nn.ReLU(inplace=True),
        ]
        super().__init__(*layers, *([_pool1()] if pool1 else []))


def _make_stem(
    stem: str, in_chans: int, width: int, mid: int, norm_layer: NormLayer, pool1: bool, num_frames: int
) -> nn.Sequential:
    if stem == "r2plus1d":
        return R2Plus1dStem(in_chans, width, norm_layer, pool1, mid=mid)
    if stem == "3d":
        return BasicStem(in_chans, width, norm_layer, pool1)
    if stem == "2d":
        return BasicStem(in_chans, width, norm_layer, pool1, kt=1, pad_t=0)
    if stem == "r2d":  # collapses the whole clip to one frame
        return BasicStem(in_chans, width, norm_layer, pool1, kt=num_frames, pad_t=0)
    raise ValueError(f"unknown stem {stem!r}; expected one of r2plus1d, 3d, 2d, r2d")


# ------------------------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    """Training-mode BatchNorms of ``module`` normalise with batch statistics but leave their running statistics
    (and ``num_batches_tracked``) exactly as they were."""
    bns = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged, bit for bit
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(bns, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


def _recompute_keeps_bn_stats(module: nn.Module) -> Tuple[Any, Any]:
    """Checkpoint contexts (forward, recomputation): the recomputation during backward must not update BatchNorm
    running statistics a second time, or checkpointing would change what training computes."""
    return contextlib.nullcontext(), _frozen_bn_stats(module)


class VideoResNet(VideoModel):
    """Video ResNet on B x C x T x H x W input (normalised RGB, or ``in_chans`` channels such as 2-channel flow).

    Spatial stride is 2 in the stem and the first block of layers 2-4; temporal stride 2 in the same blocks when their
    conv is 3D or (2+1)D (so 32 frames -> 4). Pooling is adaptive, so any clip size works; ``global_pool=''`` turns the
    classifier into a 1x1x1 convolution that returns a B x num_classes x t x h x w score map (dense prediction).
    ``torch.jit.script`` compiles it (``forward``, ``forward_features``, ``forward_head``).
    """

    __jit_unused_properties__ = ["stages", "default_cfg", "pretrained_cfg"]

    def __init__(
        self,
        block: str,
        conv_makers: Sequence[str],
        layers: Sequence[int],
        stem: str,
        num_classes: int = 400,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        channel_multiplier: float = 1.0,
        mid_width: str = "per_conv",
        bn_eps: float = 1e-5,
        pool1: bool = False,
        zero_init_residual: bool = False,
        global_pool: str = "avg",
        num_frames: int = 8,
        stem_mid: int = 45,
    ):
        """
        Args:
            block: 'basic' or 'bottleneck'.
            conv_makers: per layer, the block's 3x3x3-type conv: '3d', '2plus1d', '2d', 'ir_csn' or 'ip_csn'.
            layers: blocks per layer.
            stem: 'r2plus1d', '3d', '2d' (fR2D) or 'r2d' (temporal kernel = ``num_frames``).
            num_classes: classifier outputs; 0 gives pooled features from ``forward``.
            in_chans: input channels (3 for RGB, 2 for optical flow).
            drop_rate: dropout before the classifier.
            channel_multiplier: scales every width (VMZ option; < 1 gives tiny models for tests).
            mid_width: (2+1)D inner width rule, 'per_conv' (VMZ caffe2) or 'per_block' (torchvision).
            bn_eps: BatchNorm eps; 1e-3 for caffe2-derived weights, 1e-5 for torchvision's. Momentum is always 0.1.
            pool1: max-pool (1,3,3)/(1,2,2) after the stem (used by the 224-pixel CSN models).
            zero_init_residual: zero the last BN scale of every block, so blocks start as identities.
            global_pool: 'avg' or '' (fully-convolutional head).
            num_frames: clip length, only used by the 'r2d' stem whose kernel spans the whole clip.
            stem_mid: inner width of the (2+1)D stem (45 in VMZ and torchvision).
        """
        super().__init__()
        if mid_width not in ("per_conv", "per_block"):
            raise ValueError(f"mid_width must be 'per_conv' or 'per_block', got {mid_width!r}")
        if len(conv_makers) != 4 or len(layers) != 4:
            raise ValueError("conv_makers and layers need one entry per layer (4)")
        block_cls = BLOCKS[block]
        makers = [CONV_MAKERS[m] for m in conv_makers]
        norm_layer = partial(nn.BatchNorm3d, eps=bn_eps, momentum=0.1)

        def scaled(c: int) -> int:
            return max(1, int(round(c * channel_multiplier)))

        widths = [scaled(w) for w in (64, 128, 256, 512)]
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.global_pool = global_pool
        self.grad_checkpointing = False
        self._mid_width = mid_width

        self.stem = _make_stem(stem, in_chans, widths[0], scaled(stem_mid), norm_layer, pool1, num_frames)
        self._stem_frames_lost = num_frames - 1 if stem == "r2d" else 0  # its kernel spans the clip, unpadded
        self.inplanes = widths[0]
        reduction = 4 if pool1 else 2
        t_reduction = 1
        self.feature_info = [dict(num_chs=widths[0], reduction=reduction, temporal_reduction=1, module="stem")]
        for i, (maker, width, n) in enumerate(zip(makers, widths, layers)):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", self._make_layer(block_cls, maker, width, n, stride, norm_layer))
            reduction *= stride
            t_reduction *= maker.get_downsample_stride(stride)[0]
            self.feature_info.append(
                dict(
                    num_chs=width * block_cls.expansion,
                    reduction=reduction,
                    temporal_reduction=t_reduction,
                    module=f"layer{i + 1}",
                )
            )
        del self.inplanes
        self.num_features = self.head_hidden_size = widths[3] * block_cls.expansion
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    m.zero_init_last()

    def _make_layer(
        self,
        block: Type[nn.Module],
        conv_maker: Type[nn.Module],
        planes: int,
        blocks: int,
        stride: int,
        norm_layer: NormLayer,
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            ds_stride = conv_maker.get_downsample_stride(stride)
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes * block.expansion, 1, ds_stride, bias=False),
                norm_layer(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, conv_maker, stride, downsample, self._mid_width, norm_layer)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, conv_maker, mid_width=self._mid_width, norm_layer=norm_layer))
        return nn.Sequential(*layers)

    # --- timm model interface -------------------------------------------------------------------------------------

    @property
    def stages(self) -> List[nn.Module]:
        return [self.stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def pool_size(self, clip_size: Sequence[int]) -> Tuple[int, int, int]:
        t, h, w = clip_size
        return super().pool_size((t - self._stem_frames_lost, h, w))  # the 'r2d' stem's kernel spans the clip

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^stem", blocks=r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self, name_only: bool = False) -> Union[str, nn.Module]:
        return "fc" if name_only else self.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the head; ``num_classes=0`` makes ``forward`` return pooled features of size ``num_features``."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        ref = next(self.parameters())
        self.fc = (
            nn.Linear(self.num_features, num_classes).to(ref.device, ref.dtype) if num_classes > 0 else nn.Identity()
        )

    def _checkpointing(self) -> bool:
        return self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting()

    @torch.jit.unused
    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if not self._checkpointing() or not isinstance(stage, nn.Sequential):  # a pruned stage is an Identity
            return stage(x)
        for blk in stage:  # checkpoint block by block (stem modules are cheap to keep)
            x = checkpoint(blk, x, use_reentrant=False, context_fn=partial(_recompute_keeps_bn_stats, blk))
        return x

    @torch.jit.unused
    def _checkpointed_layers(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = self._run_stage(layer, x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled final feature map, B x num_features x t x h x w."""
        x = self.stem(x)
        if self._checkpointing():
            return self._checkpointed_layers(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCTHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Feature maps of the stages in ``feature_info`` (0 = stem, 1-4 = layer1-4), with timm's signature and index
        semantics. There is no final norm (``norm`` changes nothing); maps are ``NCTHW``."""
        if output_fmt != "NCTHW":
            raise ValueError(f"output_fmt must be 'NCTHW' (video feature maps), got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        intermediates = []
        for i, stage in enumerate(self.stages):
            x = stage(x) if i == 0 else self._run_stage(stage, x)
            if i in take:
                intermediates.append(x)
            if stop_early and i == max_index:
                break
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(
        self, indices: Union[int, List[int]] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> List[int]:
        """timm's pruning for ``forward_intermediates``: stages after the last index become ``Identity`` and, with
        ``prune_head``, the classifier goes (``forward`` then returns the unpooled map). Returns the kept indices."""
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        for i in range(max_index + 1, 5):
            setattr(self, f"layer{i}", nn.Identity())
        if prune_head:
            self.reset_classifier(0, "")
        return take

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3, 4))
            x = self.drop(x)
            return x if pre_logits else self.fc(x)
        # fully convolutional: the fc acts as a 1x1x1 conv at every position
        x = self.drop(x)
        if pre_logits or self.num_classes == 0:  # no classifier (an Identity)
            return x
        return self.fc(x.movedim(1, -1)).movedim(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------------------------------------
# Builder, pretrained configs and entrypoints
# ------------------------------------------------------------------------------------------------------------------


def _create_video_resnet(variant: str, pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    return build_model_with_cfg(VideoResNet, variant, pretrained, **kwargs)


_VMZ_REPO = "https://github.com/facebookresearch/VMZ"
_VMZ_DOC = _VMZ_REPO + "/blob/main/c2/tutorials/"  # where a published number comes from: + models.md, model_zoo.md
_TV_DOC = "https://pytorch.org/vision/stable/models.html#video-classification"
_DROPBOX = "https://www.dropbox.com/s/{key}/{file}?dl=1"
_IG65M_RELEASE = "https://github.com/moabitcoin/ig65m-pytorch/releases/download/v1.0.0/"
_BJUNCEK_RELEASE = "https://github.com/bjuncek/VMZ/releases/download/test_models/"
_MMACTION2_CSN = "https://download.openmmlab.com/mmaction/recognition/csn/"
_PAPER_R21D = ("arXiv:1711.11248", "A Closer Look at Spatiotemporal Convolutions for Action Recognition")
_PAPER_IG65M = ("arXiv:1905.00561", "Large-scale weakly-supervised pre-training for video action recognition")
_PAPER_CSN = ("arXiv:1904.02811", "Video Classification with Channel-Separated Convolutional Networks")
_PAPER_GBLEND = ("arXiv:1905.12681", "What Makes Training Multi-Modal Classification Networks Hard?")
# Evaluation protocols, in words, as the sources state them
_PROTOCOL_IG65M = "10 uniform clips x 1 centre crop, softmax averaged (Ghadiyaram et al. 2019)"
_PROTOCOL_CSN = "10 clips x 3 crops of 256 (convolutional prediction), averaged (Tran et al. 2019; VMZ test.md)"
_PROTOCOL_GBLEND = "the audio-visual Gradient-Blending model, not the visual tower alone (VMZ model_zoo.md)"
_PROTOCOL_2018 = "10 clips x 1 centre crop, softmax averaged (Tran et al. 2018, Table 2)"
_PROTOCOL_2018_DENSE = "dense prediction over the whole video (Tran et al. 2018, Table 5)"
# VMZ's code is Apache-2.0, but no licence is stated for its released weights (nor for ig65m-pytorch's ports of them).
_VMZ_WEIGHTS_LICENSE = dict(license="other", license_name="vmz-weights-no-licence-stated", license_link=_VMZ_REPO)


def _cfg(**kwargs: Any) -> PretrainedCfg:
    """Family defaults: the :class:`ClipSpec` defaults (16 frames resized to 128x171, 112 crop, Kinetics mean/std),
    400 Kinetics classes, VMZ caffe2 BN (eps 1e-3), VMZ's (unstated) weights licence. Clip fields may be passed flat
    (``num_frames=32``). An architecture without weights has no licence of its own."""
    clip = {k: kwargs.pop(k) for k in ClipSpec.fields() if k in kwargs}
    args = dict(
        num_classes=400,
        label_set="kinetics400",
        **(_VMZ_WEIGHTS_LICENSE if "url" in kwargs else {}),
        origin_url=_VMZ_REPO,
        paper_ids=_PAPER_R21D[0],
        paper_name=_PAPER_R21D[1],
        model_args=dict(bn_eps=1e-3),
    )
    args.update(kwargs)
    return PretrainedCfg(clip=ClipSpec(**clip), **args)


def _vmz2019(
    file: str,
    key: str,
    num_classes: int,
    frames: int,
    video_top1: Optional[float] = None,
    video_top5: Optional[float] = None,
    *,
    csn: bool = False,
    paper: Tuple[str, str] = _PAPER_IG65M,
    mirrors: Tuple[Dict[str, Any], ...] = (),
    protocol: Optional[str] = None,
    **kwargs: Any,
) -> PretrainedCfg:
    """A weight from the VMZ caffe2 2019 model zoo (``c2/tutorials/model_zoo.md``); ``mirrors`` are PyTorch ports.
    ``num_classes=None``: the count was never published and is read from the file's ``last_out_L{N}``."""
    metrics = []
    if video_top1 is not None:
        protocol = protocol or (_PROTOCOL_CSN if csn else _PROTOCOL_IG65M)
        metrics = [
            dict(dataset="kinetics400-val", metric=m, value=v, protocol=protocol, source=_VMZ_DOC + "model_zoo.md")
            for m, v in (("video_top1", video_top1), ("video_top5", video_top5))
        ]
    csn_args = (
        dict(crop_size=224, resize_size=256, sampling_stride=2, model_args=dict(bn_eps=1e-3, pool1=True)) if csn else {}
    )
    return _cfg(
        url=_DROPBOX.format(key=key, file=file.replace(" ", "%20")),
        source_format="caffe2_pkl",
        source_file=file,
        mirrors=mirrors,
        num_frames=frames,
        num_classes=num_classes,
        label_set=kwargs.pop("label_set", "kinetics400" if num_classes == 400 else None),
        metrics=metrics,
        paper_ids=paper[0],
        paper_name=paper[1],
        **{
            **dict(notes="Converted from the VMZ caffe2 2019 model zoo."),
            **csn_args,
            **kwargs,
        },
    )


def _gblend(
    file: str,
    key: str,
    video_top1: Optional[float],
    video_top5: Optional[float],
    training: str,
    paper: Tuple[str, str] = _PAPER_GBLEND,
) -> PretrainedCfg:
    """The visual tower of a VMZ Gradient-Blending audio-visual ip-CSN-152 (``model_zoo.md``); its published numbers
    are the audio-visual model's. Class counts were not published: read from the file."""
    kinetics = video_top1 is not None
    return _vmz2019(
        file,
        key,
        None,
        32,
        video_top1,
        video_top5,
        csn=True,
        paper=paper,
        protocol=_PROTOCOL_GBLEND,
        label_set="kinetics400" if kinetics else None,
        notes=f"Visual tower of VMZ's audio-visual ip-CSN-152 ({training}); audio-tower blobs are ignored by name.",
    )


def _ig65m_pth(file: str) -> Tuple[Dict[str, Any], ...]:
    """ig65m-pytorch's port (v1.0.0 release asset; the name ends in a sha256 prefix)."""
    return (dict(url=_IG65M_RELEASE + file, source_format="pth", hash_prefix=file.rsplit("-", 1)[1].split(".")[0]),)


def _vmz_pth(file: str) -> Tuple[Dict[str, Any], ...]:
    """VMZ PyTorch (``vmz``) port, released on bjuncek/VMZ without a hash."""
    return (dict(url=_BJUNCEK_RELEASE + file, source_format="pth", hash_prefix=None),)


def _mmaction2(file: str, head: bool = True) -> Tuple[Dict[str, Any], ...]:
    """mmaction2's conversion of the same caffe2 file (``configs/recognition/csn/metafile.yml``, "Converted From";
    backbone-only files are named after the VMZ pre-training they hold). Its key names are renamed on load
    (``models/_ports.py``); the file name ends in a sha256 prefix."""
    digest = file.rsplit("-", 1)[1].split(".")[0]
    return (dict(url=_MMACTION2_CSN + file, source_format="pth", hash_prefix=digest, head=head),)


def _vmz2018(
    file: str,
    key: str,
    frames: int,
    clip_top1: float,
    video_top1: float,
    video_top5: float,
    protocol: str = _PROTOCOL_2018,
    **kwargs: Any,
) -> PretrainedCfg:
    """A Kinetics-400 model trained from scratch, from the VMZ caffe2 2018 release (``c2/tutorials/models.md``)."""
    src = _VMZ_DOC + "models.md"
    return _cfg(
        url=_DROPBOX.format(key=key, file=file),
        source_format="caffe2_pkl",
        source_file=file,
        num_frames=frames,
        metrics=[
            dict(dataset="kinetics400-val", metric="clip_top1", value=clip_top1, protocol="single clip", source=src),
            dict(dataset="kinetics400-val", metric="video_top1", value=video_top1, protocol=protocol, source=src),
            dict(dataset="kinetics400-val", metric="video_top5", value=video_top5, protocol=protocol, source=src),
        ],
        **{**dict(notes="VMZ caffe2 2018 release."), **kwargs},
    )


def _tv(file: str, top1: float, top5: float, **kwargs: Any) -> PretrainedCfg:
    """torchvision's Kinetics-400 weights (trained in PyTorch; eps 1e-5)."""
    protocol = "5 clips of 16 frames at 15 fps, resize 128x171, centre crop 112, video-level"
    return _cfg(
        url=f"https://download.pytorch.org/models/{file}",
        hash_prefix=file.rsplit("-", 1)[1].split(".")[0],
        source_format="pth",
        source_file=file,
        num_frames=16,
        frame_rate=15.0,
        antialias=False,
        license="bsd-3-clause",  # torchvision's; its docs add that weights may carry their datasets' terms
        license_name=None,
        license_link=None,
        origin_url="https://github.com/pytorch/vision",
        metrics=[
            dict(dataset="kinetics400-val", metric="video_top1", value=top1, protocol=protocol, source=_TV_DOC),
            dict(dataset="kinetics400-val", metric="video_top5", value=top5, protocol=protocol, source=_TV_DOC),
        ],
        notes="Trained natively in PyTorch by torchvision (not the caffe2 weights).",
        **{**dict(model_args=dict(bn_eps=1e-5)), **kwargs},
    )


# Tags whose Hub copy (HF_HUB_ORG/arch.tag, written by `r21d-zoo publish`) exists. Add a name only once its repo is
# public, so the registry never points at a repository that does not exist.
PUBLISHED_ON_HUB: Tuple[str, ...] = ()

default_cfgs = generate_default_cfgs(
    {
        # --- R(2+1)D-18--------------------------------------------------------------------------------------------
        "r2plus1d_18.kinetics400_16f": _vmz2018("r2.5d_d18_l16.pkl", "94d2ruqn6tp7xno", 16, 57.3, 68.5, 87.5),
        "r2plus1d_18.kinetics400_8f": _vmz2018("r2.5d_d18_l8.pkl", "wzgx4d80mrh7pnf", 8, 53.2, 65.3, 85.2),
        "r2plus1d_18.tv_kinetics400_16f": _tv(
            "r2plus1d_18-91a641e6.pth", 67.463, 86.175, model_args=dict(bn_eps=1e-5, mid_width="per_block")
        ),
        # --- R(2+1)D-34--------------------------------------------------------------------------------------------
        "r2plus1d_34.ig65m_ft_kinetics400_32f": _vmz2019(
            "r2plus1d_34_clip32_ft_kinetics_from_ig65m_ f106169681.pkl",
            "z41ff7vs0bzf6b8",
            400,
            32,
            80.0,
            94.2,
            mirrors=_ig65m_pth("r2plus1d_34_clip32_ft_kinetics_from_ig65m-ade133f1.pth"),
        ),
        "r2plus1d_34.ig65m_ft_kinetics400_8f": _vmz2019(
            "r2plus1d_34_clip8_ft_kinetics_from_ig65m_ f128022400.pkl",
            "p81twy88kwrrcop",
            400,
            8,
            74.9,
            91.8,
            mirrors=_ig65m_pth("r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth"),
        ),
        "r2plus1d_34.ig65m_32f": _vmz2019(
            "r2plus1d_34_clip32_ig65m_from_scratch_f102649996.pkl",
            "eimo232tqw8mwi9",
            359,
            32,
            mirrors=_ig65m_pth("r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth"),
        ),
        "r2plus1d_34.ig65m_8f": _vmz2019(
            "r2plus1d_34_clip8_ig65m_from_scratch_f79708462.pkl",
            "6xwyu1az6oy4ts7",
            487,
            8,
            mirrors=_ig65m_pth("r2plus1d_34_clip8_ig65m_from_scratch-9bae36ae.pth"),
        ),
        "r2plus1d_34.kinetics400_32f": _vmz2018(
            "r2.5d_d34_l32.pkl",
            "y6c6jf7myv2w6iq",
            32,
            60.6,
            72.4,
            90.6,
            protocol=_PROTOCOL_2018_DENSE,
            notes="VMZ caffe2 2018 release.",
        ),
        "r2plus1d_34.sports1m_ft_kinetics400_32f": _vmz2018(
            "r2.5d_d34_l32_ft_sports1m.pkl",
            "odd9smqn2t54run",
            32,
            63.9,
            74.2,
            92.1,
            protocol=_PROTOCOL_2018_DENSE,
            notes="VMZ caffe2 2018 release.",
        ),
        "r2plus1d_34.sports1m_ft_kinetics400_flow_32f": _vmz2018(
            "r2.5d_d34_l32_ft_sports1m_optical_flow.pkl",
            "30zj1t9xte5vy64",
            32,
            55.9,
            68.2,
            88.0,
            in_chans=2,
            modality="flow",
            mean=FLOW_MEAN,
            std=FLOW_STD,
            protocol=_PROTOCOL_2018_DENSE,
            notes="2-channel optical-flow input (VMZ caffe2 2018 release): Farneback flow of 112x112 grey crops, "
            "computed on the fly (r21d_zoo.video.flow).",
        ),
        # --- R(2+1)D-50 / 101: architectures without video-only weights--------------------------------------------
        "r2plus1d_50": _cfg(),
        "r2plus1d_101.audioset_16f": _vmz2019(
            "g_b_r2_plus_1d_101_audioset.pkl",
            "7e36vogqyea152p",
            None,
            16,
            paper=_PAPER_GBLEND,
            crop_size=224,
            resize_size=256,
            notes="Visual tower of VMZ's audio-visual R(2+1)D-101 trained from scratch on AudioSet (16 x 224); the "
            "only released R(2+1)D-101. The class count is read from the file. Whether the released net max-pooled "
            "after conv1 is not recorded in the file; this builds R(2+1)D's default (no pool1).",
        ),
        # --- R(2+1)D-152-------------------------------------------------------------------------------------------
        "r2plus1d_152.ig65m_ft_kinetics400_32f": _vmz2019(
            "r2plus1d_152_ft_kinetics_from_ig65m_f107107466.pkl",
            "tmxuae8ubo5gipy",
            400,
            32,
            81.6,
            95.3,
            mirrors=_vmz_pth("r2plus1d_152_ft_kinetics_from_ig65m_f107107466.pth"),
        ),
        "r2plus1d_152.sports1m_ft_kinetics400_32f": _vmz2019(
            "r2plus1d_152_ft_kinetics_from_sports1m_f128957437.pkl",
            "twvcpe30rxuaf45",
            400,
            32,
            79.5,
            94.0,
            mirrors=_vmz_pth("r2plus1d_152_ft_kinetics_from_sports1m_f128957437.pth"),
        ),
        "r2plus1d_152.kinetics400_32f": _vmz2019(
            "r2plus1d_152_kinetics_from_scratch_f127858918.pkl", "9770y063u3z5bmb", 400, 32, 77.3, 92.5
        ),
        "r2plus1d_152.ig65m_32f": _vmz2019(
            "r2plus1d_152_ig65m_from_scratch_f106380637.pkl",
            "oqdg176p7nqc84v",
            359,
            32,
            mirrors=_vmz_pth("r2plus1d_152_ig65m_from_scratch_f106380637.pth"),
        ),
        "r2plus1d_152.sports1m_32f": _vmz2019(
            "r2plus1d_152_sports1m_from_scratch_f127111290.pkl", "w5cdqeyqukuaqt7", 487, 32
        ),
        # --- R3D / MC3 / R2D / fR2D--------------------------------------------------------------------------------
        "r3d_18.kinetics400_16f": _vmz2018("r3d_d18_l16.pkl", "8tqp8uhjmedflu1", 16, 52.9, 64.7, 85.0),
        "r3d_18.kinetics400_8f": _vmz2018("r3d_d18_l8.pkl", "n3ax2591imcy9ly", 8, 49.8, 62.3, 83.4),
        "r3d_18.tv_kinetics400_16f": _tv("r3d_18-b3b3357e.pth", 63.20, 83.479),
        "r3d_34": _cfg(),
        "r3d_50": _cfg(),
        "r3d_101": _cfg(),
        "r3d_152": _cfg(),
        "mc3_18.kinetics400_16f": _vmz2018("mc3_d18_l16.pkl", "rpgbzjewagjeu2f", 16, 54.1, 65.2, 85.8),
        "mc3_18.kinetics400_8f": _vmz2018("mc3_d18_l8.pkl", "3jxzhc3kduyrpik", 8, 51.1, 63.3, 84.2),
        "mc3_18.tv_kinetics400_16f": _tv("mc3_18-a90a0ba3.pth", 63.96, 84.13),
        "mc2_18.kinetics400_16f": _vmz2018("mc2_d18_l16.pkl", "xmtqk2w3p60yly0", 16, 53.6, 64.8, 85.1),
        "mc2_18.kinetics400_8f": _vmz2018("mc2_d18_l8.pkl", "lkmhyjok8odtv8e", 8, 50.6, 63.0, 83.8),
        "mc4_18.kinetics400_16f": _vmz2018("mc4_d18_l16.pkl", "lrjwye0ldsgi2p2", 16, 54.3, 65.6, 85.6),
        "mc4_18.kinetics400_8f": _vmz2018("mc4_d18_l8.pkl", "vx2xee36et823gs", 8, 50.9, 63.0, 84.2),
        "mc5_18.kinetics400_16f": _vmz2018("mc5_d18_l16.pkl", "3qp62d3159rzwsj", 16, 54.1, 65.6, 85.5),
        "mc5_18.kinetics400_8f": _vmz2018("mc5_d18_l8.pkl", "z6fxv6jr30i2lwz", 8, 50.7, 62.9, 84.2),
        # --- reversed mixed convolutions: 2D stem and early layers, 3D from layer X-1 on (rMCx) ------------------
        "rmc2_18.kinetics400_16f": _vmz2018("rmc2_d18_l16.pkl", "70k3p0xz6rjcdtb", 16, 53.5, 65.4, 85.5),
        "rmc2_18.kinetics400_8f": _vmz2018("rmc2_d18_l8.pkl", "vnjpzq7li2b7tk2", 8, 50.2, 62.7, 83.9),
        "rmc3_18.kinetics400_16f": _vmz2018("rmc3_d18_l16.pkl", "n8eulubwh6l3o0b", 16, 53.6, 65.5, 85.7),
        "rmc3_18.kinetics400_8f": _vmz2018("rmc3_d18_l8.pkl", "1vwjomlc45ox6u1", 8, 50.2, 62.8, 83.7),
        "rmc4_18.kinetics400_16f": _vmz2018("rmc4_d18_l16.pkl", "di3wwadbapc61rn", 16, 53.9, 65.6, 85.3),
        "rmc4_18.kinetics400_8f": _vmz2018("rmc4_d18_l8.pkl", "zots41ng2xs2ezu", 8, 50.3, 62.8, 83.3),
        "rmc5_18.kinetics400_16f": _vmz2018("rmc5_d18_l16.pkl", "lb5jaji177hid7p", 16, 52.5, 63.5, 84.2),
        "rmc5_18.kinetics400_8f": _vmz2018("rmc5_d18_l8.pkl", "3e56jjx6x1qot4x", 8, 49.7, 61.6, 83.1),
        "r2d_18.kinetics400_16f": _vmz2018(
            "r2d_d18_l16.pkl", "hyw8ltzvhadxgia", 16, 47.5, 59.4, 81.3, model_args=dict(bn_eps=1e-3, num_frames=16)
        ),
        "r2d_18.kinetics400_8f": _vmz2018(
            "r2d_d18_l8.pkl", "ju4fah9dksn08s1", 8, 47.0, 60.0, 81.2, model_args=dict(bn_eps=1e-3, num_frames=8)
        ),
        "fr2d_18.kinetics400_16f": _vmz2018("r2df_d18_l16.pkl", "4yy0tdfebdy0ptr", 16, 50.7, 60.9, 81.9),
        "fr2d_18.kinetics400_8f": _vmz2018("r2df_d18_l8.pkl", "4jexszps3564za3", 8, 48.5, 60.0, 81.8),
        # --- channel-separated networks (224-pixel clips, short side 256, every 2nd frame, pool1)------------------
        "ir_csn_152.ig65m_ft_kinetics400_32f": _vmz2019(
            "irCSN_152_ft_kinetics_from_ig65m_f126851907.pkl",
            "gmd8r87l3wmkn3h",
            400,
            32,
            82.6,
            95.3,
            csn=True,
            paper=_PAPER_CSN,
            mirrors=_vmz_pth("irCSN_152_ft_kinetics_from_ig65m_f126851907.pth"),
        ),
        "ir_csn_152.sports1m_ft_kinetics400_32f": _vmz2019(
            "irCSN_152_ft_kinetics_from_sports1m_f101599884.pkl",
            "zuoj1aqouh6bo6k",
            400,
            32,
            78.2,
            93.0,
            csn=True,
            paper=_PAPER_CSN,
            mirrors=_mmaction2(
                "vmz/vmz_ircsn_sports1m_pretrained_r152_32x2x1_58e_kinetics400_rgb_20210617-b9b10241.pth"
            )
            + _vmz_pth("irCSN_152_ft_kinetics_from_Sports1M_f101599884.pth"),
        ),
        "ir_csn_152.kinetics400_32f": _vmz2019(
            "irCSN_152_kinetics_from_scratch_f98268019.pkl",
            "46gcm7up60ssx5c",
            400,
            32,
            76.5,
            92.1,
            csn=True,
            paper=_PAPER_CSN,
            mirrors=_mmaction2("vmz/vmz_ircsn_from_scratch_r152_32x2x1_180e_kinetics400_rgb_20210617-5c933ae1.pth"),
        ),
        "ir_csn_152.ig65m_32f": _vmz2019(
            "irCSN_152_ig65m_from_scratch_f125286141.pkl",
            "r0kppq7ox6c57no",
            359,
            32,
            csn=True,
            paper=_PAPER_CSN,
            mirrors=_mmaction2("ircsn_from_scratch_r152_ig65m_20200807-771c4135.pth", head=False)
            + _vmz_pth("irCSN_152_ig65m_from_scratch_f125286141.pth"),
        ),
        "ir_csn_152.sports1m_32f": _vmz2019(
            "irCSN_152_sports1m_from_scratch_f99918785.pkl",
            "woh99y2hll1mlqv",
            487,
            32,
            csn=True,
            paper=_PAPER_CSN,
            mirrors=_mmaction2("ircsn_from_scratch_r152_sports1m_20210617-bcc9c0dd.pth", head=False)
            + _vmz_pth("irCSN_152_Sports1M_from_scratch_f99918785.pth"),
        ),
        "ip_csn_152.ig65m_ft_kinetics400_32f": _vmz2019(
            "ipCSN_152_ft_kinetics_from_ig65m_f133090949.pkl",
            "zpp3p0vn2i7bibl",
            400,
            32,
            82.5,
            95.3,
            csn=True,
            paper=_PAPER_CSN,
            mirrors=_mmaction2("vmz/vmz_ipcsn_ig65m_pretrained_r152_32x2x1_58e_kinetics400_rgb_20210617-c3be9793.pth")
            + _vmz_pth("ipCSN_152_ft_kinetics_from_ig65m_f133090949.pth"),
        ),
        "ip_csn_152.sports1m_ft_kinetics400_32f": _vmz2019(
            "ipCSN_152_ft_kinetics_from_sports1m_f111279053.pkl",
            "ir7cr0hda36knux",
            400,
            32,
            78.8,
            93.5,
            csn=True,
            paper=_PAPER_CSN,
            mirrors=_mmaction2(
                "vmz/vmz_ipcsn_sports1m_pretrained_r152_32x2x1_58e_kinetics400_rgb_20210617-3367437a.pth"
            )
            + _vmz_pth("ipCSN_152_ft_kinetics_from_Sports1M_f111279053.pth"),
        ),
        "ip_csn_152.kinetics400_32f": _vmz2019(
            "ipCSN_152_kinetics_from_scratch_f129594342.pkl",
            "3fihu6ti60047mu",
            400,
            32,
            77.8,
            92.8,
            csn=True,
            paper=_PAPER_CSN,
            mirrors=_mmaction2("vmz/vmz_ipcsn_from_scratch_r152_32x2x1_180e_kinetics400_rgb_20210617-d565828d.pth"),
        ),
        "ip_csn_152.ig65m_32f": _vmz2019(
            "ipCSN_152_ig65m_from_scratch_f130601052.pkl",
            "1ryvx8k7kzs8od6",
            359,
            32,
            csn=True,
            paper=_PAPER_CSN,
            mirrors=_mmaction2("ipcsn_from_scratch_r152_ig65m_20210617-c4b99d38.pth", head=False)
            + _vmz_pth("ipCSN_152_ig65m_from_scratch_f130601052.pth"),
        ),
        "ip_csn_152.sports1m_32f": _vmz2019(
            "ipCSN_152_sports1m_from_scratch_f111018543.pkl",
            "70di7o7qz6gjq6x",
            487,
            32,
            csn=True,
            paper=_PAPER_CSN,
            mirrors=_mmaction2("ipcsn_from_scratch_r152_sports1m_20210617-7a7cc5b9.pth", head=False)
            + _vmz_pth("ipCSN_152_Sports1M_from_scratch_f111018543.pth"),
        ),
        # --- Gradient-Blending audio-visual ip-CSN-152: the visual towers (v_ blobs; the audio tower is ignored) ------
        "ip_csn_152.ig65m_audioset_ft_kinetics400_32f": _gblend(
            "g_b_ip_csn_152_ig_audioset_ft_kinetics.pkl",
            "9ja3rlmr568qemt",
            83.3,
            96.0,
            "IG-65M + AudioSet, then Kinetics",
        ),
        "ip_csn_152.ig65m_audioset_32f": _gblend(
            "ig_audioset_ip_csn_152.pkl", "bgxf62o9yzx7zfy", None, None, "IG-65M + AudioSet pre-training"
        ),
        "ip_csn_152.gblend_kinetics400_32f": _gblend(
            "g_b_ip_csn_152_kinetics.pkl", "13d5jgq65nd5sn6", 79.1, 93.9, "Kinetics from scratch"
        ),
        "ip_csn_152.sports1m_audioset_ft_kinetics400_32f": _gblend(
            "g_b_ip_csn_152_sports_audioset_ft_kinetics.pkl",
            "ubcy09t8ghes9m7",
            80.4,
            94.8,
            "Sports-1M + AudioSet, then Kinetics",
        ),
        "ip_csn_152.sports1m_audioset_32f": _gblend(
            "sports1m_audioset_ip_csn_152.pkl", "u4dgz0z09aaim9x", None, None, "Sports-1M + AudioSet pre-training"
        ),
        "ip_csn_152.ig65m_imagenet_32f": _gblend(
            "ig_imagenet_ip_csn_152.pkl",
            "63oy0vn4gkyc3xq",
            None,
            None,
            "IG-65M + ImageNet pre-training (VMZ's EPIC-Kitchens entry)",
            paper=_PAPER_CSN,
        ),
        "ir_csn_50.ig65m_32f": _vmz2019(
            "irCSN_50_pretrained_ig65m_f231921860.pkl",
            "1cqzndm1zobxvhh",
            None,
            32,
            csn=True,
            paper=_PAPER_CSN,
            mirrors=_mmaction2("ircsn_from_scratch_r50_ig65m_20210617-ce545a37.pth", head=False),
            notes="VMZ caffe2 2019 zoo: IG-65M pre-training, class count not published (read from the file).",
        ),
        "ir_csn_50.ig65m_ft_kinetics400_32f": _vmz2019(
            "irCSN_50_ft_kinetics_from_ig65m_f233743920.pkl",
            "b6o2mvoqrvupatt",
            400,
            32,
            csn=True,
            paper=_PAPER_CSN,
            notes="VMZ caffe2 2019 zoo; accuracy listed as TBD upstream.",
        ),
        "ip_csn_50": _cfg(
            crop_size=224,
            resize_size=256,
            sampling_stride=2,
            num_frames=32,
            model_args=dict(bn_eps=1e-3, pool1=True),
            paper_ids=_PAPER_CSN[0],
            paper_name=_PAPER_CSN[1],
        ),
    },
    published=PUBLISHED_ON_HUB,
)


# Entrypoints: numbers only. Architecture args a weight needs (eps, width rule, pool1) come from its pretrained cfg.


@register_model
def r2plus1d_18(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """R(2+1)D-18 (Tran et al. 2018) with VMZ caffe2 widths; the ``tv_kinetics400_16f`` tag builds torchvision's."""
    model_args = dict(block="basic", conv_makers=("2plus1d",) * 4, layers=(2, 2, 2, 2), stem="r2plus1d")
    return _create_video_resnet("r2plus1d_18", pretrained, **dict(model_args, **kwargs))


@register_model
def r2plus1d_34(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """R(2+1)D-34, the IG-65M workhorse (Ghadiyaram et al. 2019)."""
    model_args = dict(block="basic", conv_makers=("2plus1d",) * 4, layers=(3, 4, 6, 3), stem="r2plus1d")
    return _create_video_resnet("r2plus1d_34", pretrained, **dict(model_args, **kwargs))


@register_model
def r2plus1d_50(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """R(2+1)D-50 (bottleneck); no video-only weights were released."""
    model_args = dict(block="bottleneck", conv_makers=("2plus1d",) * 4, layers=(3, 4, 6, 3), stem="r2plus1d")
    return _create_video_resnet("r2plus1d_50", pretrained, **dict(model_args, **kwargs))


@register_model
def r2plus1d_101(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """R(2+1)D-101 (bottleneck); the only release is the visual tower of an audio-visual model."""
    model_args = dict(block="bottleneck", conv_makers=("2plus1d",) * 4, layers=(3, 4, 23, 3), stem="r2plus1d")
    return _create_video_resnet("r2plus1d_101", pretrained, **dict(model_args, **kwargs))


@register_model
def r2plus1d_152(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """R(2+1)D-152 (bottleneck), Kinetics / Sports-1M / IG-65M weights (Ghadiyaram et al. 2019)."""
    model_args = dict(block="bottleneck", conv_makers=("2plus1d",) * 4, layers=(3, 8, 36, 3), stem="r2plus1d")
    return _create_video_resnet("r2plus1d_152", pretrained, **dict(model_args, **kwargs))


@register_model
def r3d_18(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """R3D-18: full 3x3x3 convolutions everywhere (Tran et al. 2018)."""
    model_args = dict(block="basic", conv_makers=("3d",) * 4, layers=(2, 2, 2, 2), stem="3d")
    return _create_video_resnet("r3d_18", pretrained, **dict(model_args, **kwargs))


@register_model
def r3d_34(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """R3D-34; no weights were released."""
    model_args = dict(block="basic", conv_makers=("3d",) * 4, layers=(3, 4, 6, 3), stem="3d")
    return _create_video_resnet("r3d_34", pretrained, **dict(model_args, **kwargs))


@register_model
def r3d_50(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """R3D-50 (bottleneck); no weights were released (target of I3D-style inflation)."""
    model_args = dict(block="bottleneck", conv_makers=("3d",) * 4, layers=(3, 4, 6, 3), stem="3d")
    return _create_video_resnet("r3d_50", pretrained, **dict(model_args, **kwargs))


@register_model
def r3d_101(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """R3D-101 (bottleneck); no weights were released."""
    model_args = dict(block="bottleneck", conv_makers=("3d",) * 4, layers=(3, 4, 23, 3), stem="3d")
    return _create_video_resnet("r3d_101", pretrained, **dict(model_args, **kwargs))


@register_model
def r3d_152(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """R3D-152 (bottleneck); no weights were released."""
    model_args = dict(block="bottleneck", conv_makers=("3d",) * 4, layers=(3, 8, 36, 3), stem="3d")
    return _create_video_resnet("r3d_152", pretrained, **dict(model_args, **kwargs))


@register_model
def mc3_18(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """MC3-18: 3D stem and layer1, 2D layers 2-4 (Tran et al. 2018; torchvision ``mc3_18``)."""
    model_args = dict(block="basic", conv_makers=("3d", "2d", "2d", "2d"), layers=(2, 2, 2, 2), stem="3d")
    return _create_video_resnet("mc3_18", pretrained, **dict(model_args, **kwargs))


@register_model
def mc2_18(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """MC2-18: 3D stem, 2D layers 1-4 (Tran et al. 2018, mixed convolutions)."""
    model_args = dict(block="basic", conv_makers=("2d", "2d", "2d", "2d"), layers=(2, 2, 2, 2), stem="3d")
    return _create_video_resnet("mc2_18", pretrained, **dict(model_args, **kwargs))


@register_model
def mc4_18(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """MC4-18: 3D stem and layers 1-2, 2D layers 3-4 (Tran et al. 2018, mixed convolutions)."""
    model_args = dict(block="basic", conv_makers=("3d", "3d", "2d", "2d"), layers=(2, 2, 2, 2), stem="3d")
    return _create_video_resnet("mc4_18", pretrained, **dict(model_args, **kwargs))


@register_model
def mc5_18(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """MC5-18: 3D stem and layers 1-3, 2D layer 4 (Tran et al. 2018, mixed convolutions)."""
    model_args = dict(block="basic", conv_makers=("3d", "3d", "3d", "2d"), layers=(2, 2, 2, 2), stem="3d")
    return _create_video_resnet("mc5_18", pretrained, **dict(model_args, **kwargs))


@register_model
def rmc2_18(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """rMC2-18: 2D stem, 3D layers 1-4 (Tran et al. 2018, reversed mixed convolutions)."""
    model_args = dict(block="basic", conv_makers=("3d", "3d", "3d", "3d"), layers=(2, 2, 2, 2), stem="2d")
    return _create_video_resnet("rmc2_18", pretrained, **dict(model_args, **kwargs))


@register_model
def rmc3_18(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """rMC3-18: 2D stem and layer 1, 3D layers 2-4 (Tran et al. 2018, reversed mixed convolutions)."""
    model_args = dict(block="basic", conv_makers=("2d", "3d", "3d", "3d"), layers=(2, 2, 2, 2), stem="2d")
    return _create_video_resnet("rmc3_18", pretrained, **dict(model_args, **kwargs))


@register_model
def rmc4_18(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """rMC4-18: 2D stem and layers 1-2, 3D layers 3-4 (Tran et al. 2018, reversed mixed convolutions)."""
    model_args = dict(block="basic", conv_makers=("2d", "2d", "3d", "3d"), layers=(2, 2, 2, 2), stem="2d")
    return _create_video_resnet("rmc4_18", pretrained, **dict(model_args, **kwargs))


@register_model
def rmc5_18(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """rMC5-18: 2D stem and layers 1-3, 3D layer 4 (Tran et al. 2018, reversed mixed convolutions)."""
    model_args = dict(block="basic", conv_makers=("2d", "2d", "2d", "3d"), layers=(2, 2, 2, 2), stem="2d")
    return _create_video_resnet("rmc5_18", pretrained, **dict(model_args, **kwargs))


@register_model
def r2d_18(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """R2D-18: the stem's temporal kernel spans the whole clip (``num_frames``), then everything is 2D."""
    model_args = dict(block="basic", conv_makers=("2d",) * 4, layers=(2, 2, 2, 2), stem="r2d")
    return _create_video_resnet("r2d_18", pretrained, **dict(model_args, **kwargs))


@register_model
def fr2d_18(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """fR2D-18: a 2D ResNet applied to every frame, pooled over time at the end."""
    model_args = dict(block="basic", conv_makers=("2d",) * 4, layers=(2, 2, 2, 2), stem="2d")
    return _create_video_resnet("fr2d_18", pretrained, **dict(model_args, **kwargs))


@register_model
def ir_csn_50(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """ir-CSN-50: interaction-reduced channel-separated bottlenecks (Tran et al. 2019)."""
    model_args = dict(block="bottleneck", conv_makers=("ir_csn",) * 4, layers=(3, 4, 6, 3), stem="3d")
    return _create_video_resnet("ir_csn_50", pretrained, **dict(model_args, **kwargs))


@register_model
def ip_csn_50(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """ip-CSN-50: interaction-preserved channel-separated bottlenecks (Tran et al. 2019)."""
    model_args = dict(block="bottleneck", conv_makers=("ip_csn",) * 4, layers=(3, 4, 6, 3), stem="3d")
    return _create_video_resnet("ip_csn_50", pretrained, **dict(model_args, **kwargs))


@register_model
def ir_csn_152(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """ir-CSN-152 (Tran et al. 2019)."""
    model_args = dict(block="bottleneck", conv_makers=("ir_csn",) * 4, layers=(3, 8, 36, 3), stem="3d")
    return _create_video_resnet("ir_csn_152", pretrained, **dict(model_args, **kwargs))


@register_model
def ip_csn_152(pretrained: bool = False, **kwargs: Any) -> VideoResNet:
    """ip-CSN-152 (Tran et al. 2019)."""
    model_args = dict(block="bottleneck", conv_makers=("ip_csn",) * 4, layers=(3, 8, 36, 3), stem="3d")
    return _create_video_resnet("ip_csn_152", pretrained, **dict(model_args, **kwargs))


# Names used by the anchor projects, so their users can switch (ig65m-pytorch hub entries, VMZ ``vmz`` keys,
# torchvision builders with their weights).
register_model_aliases(
    {
        "r2plus1d_34_32_ig65m": "r2plus1d_34.ig65m_32f",
        "r2plus1d_34_8_ig65m": "r2plus1d_34.ig65m_8f",
        "r2plus1d_34_32_kinetics": "r2plus1d_34.ig65m_ft_kinetics400_32f",
        "r2plus1d_34_8_kinetics": "r2plus1d_34.ig65m_ft_kinetics400_8f",
        "r2plus1d_152_ig65m_32frms": "r2plus1d_152.ig65m_32f",
        "r2plus1d_152_ig_ft_kinetics_32frms": "r2plus1d_152.ig65m_ft_kinetics400_32f",
        "r2plus1d_152_sports1m_32frms": "r2plus1d_152.sports1m_32f",
        "r2plus1d_152_sports1m_ft_kinetics_32frms": "r2plus1d_152.sports1m_ft_kinetics400_32f",
        "ir_csn_152_ig65m_32frms": "ir_csn_152.ig65m_32f",
        "ir_csn_152_ig_ft_kinetics_32frms": "ir_csn_152.ig65m_ft_kinetics400_32f",
        "ir_csn_152_sports1m_32frms": "ir_csn_152.sports1m_32f",
        "ir_csn_152_sports1m_ft_kinetics_32frms": "ir_csn_152.sports1m_ft_kinetics400_32f",
        "ip_csn_152_ig65m_32frms": "ip_csn_152.ig65m_32f",
        "ip_csn_152_ig_ft_kinetics_32frms": "ip_csn_152.ig65m_ft_kinetics400_32f",
        "ip_csn_152_sports1m_32frms": "ip_csn_152.sports1m_32f",
        "ip_csn_152_sports1m_ft_kinetics_32frms": "ip_csn_152.sports1m_ft_kinetics400_32f",
        "r2plus1d_18.kinetics400_v1": "r2plus1d_18.tv_kinetics400_16f",
        "r3d_18.kinetics400_v1": "r3d_18.tv_kinetics400_16f",
        "mc3_18.kinetics400_v1": "mc3_18.tv_kinetics400_16f",
    }
)
