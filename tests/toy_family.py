"""A toy architecture family that is not a VideoResNet: one 3D conv stage, one strided stage, a linear head.

It implements the model API every part of r21d_zoo uses (``feature_info``, ``num_features``, ``forward_features``,
``forward_head``, ``forward_intermediates``, ``get_classifier``, ``reset_classifier``, ``set_grad_checkpointing``,
``group_matcher``) and registers itself the way ``models/video_resnet.py`` does. Importing this module registers
``toy_c3d``; nothing outside ``models/`` knows about it."""

from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from r21d_zoo.models import (
    ClipSpec,
    PretrainedCfg,
    VideoModel,
    build_model_with_cfg,
    generate_default_cfgs,
    register_model,
)

default_cfgs = generate_default_cfgs(
    {
        "toy_c3d": PretrainedCfg(
            clip=ClipSpec(num_frames=4, resize_size=(32, 32), crop_size=28),
            num_classes=3,
            labels=("a", "b", "c"),
            classifier="head",
            license="mit",
        )
    }
)


class ToyC3D(VideoModel):
    def __init__(self, num_classes: int = 3, in_chans: int = 3, width: int = 4, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(nn.Conv3d(in_chans, width, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv3d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.feature_info = [
            dict(num_chs=width, reduction=1, temporal_reduction=1, module="stem"),
            dict(num_chs=2 * width, reduction=2, temporal_reduction=2, module="body"),
        ]
        self.num_features = 2 * width
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCTHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        take = range(2) if indices is None else ([indices] if isinstance(indices, int) else indices)
        maps = [self.stem(x)]
        maps.append(self.body(maps[0]))
        kept = [maps[i] for i in take]
        return kept if intermediates_only else (maps[-1], kept)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x.mean(dim=(2, 3, 4)))
        return x if pre_logits else self.head(x)

    def get_classifier(self, name_only: bool = False) -> Union[str, nn.Module]:
        return "head" if name_only else self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r"^stem", blocks=r"^body")

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        pass


@register_model
def toy_c3d(pretrained: bool = False, **kwargs: Any) -> ToyC3D:
    return build_model_with_cfg(ToyC3D, "toy_c3d", pretrained, **kwargs)
