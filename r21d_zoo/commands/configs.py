"""The maintainer commands' settings, importable without torch (see :mod:`r21d_zoo.jobs.configs`)."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from .._bounds import Checked, above, at_least
from ..infer.config import ModelSource, clip_field
from ..models import HF_HUB_ORG


@dataclass
class CardsConfig:
    """Regenerate the model cards and the docs' model table from the registry."""

    directory: str = field(default="model_cards", metadata=dict(help="where the cards go", positional=True))
    readme: str = field(
        default="docs/models.md", metadata=dict(help="page whose model table is rewritten ('' to skip)")
    )
    conversion_readme: str = field(
        default="conversion/README.md", metadata=dict(help="README whose command list is rewritten ('' to skip)")
    )


@dataclass
class ListConfig:
    """List architectures, or pretrained weights with --pretrained."""

    filter: Optional[str] = field(
        default=None, metadata=dict(positional=True, help="fnmatch pattern ('r2plus1d_*'), or a word to look for")
    )
    pretrained: bool = field(default=False, metadata=dict(help="list the arch.tag names that have weights"))


@dataclass
class InfoConfig:
    """Show a weight's config, clip, accuracy and provenance."""

    name: str = field(metadata=dict(positional=True, help="architecture, arch.tag or alias"))
    json: bool = field(default=False, metadata=dict(help="print the full config.json instead"))
    card: bool = field(default=False, metadata=dict(help="print the model card (the Hub README.md) instead"))


@dataclass
class ExportConfig(Checked):
    """Export a model to ONNX (.onnx) or torch.export (.pt2), with a dynamic batch axis and BatchNorm folded."""

    out: str = field(metadata=dict(flag=("-o", "--out"), help="output file: .onnx or .pt2"))
    model: ModelSource = field(
        default_factory=ModelSource, metadata=dict(overrides=dict(name=dict(positional=True, metavar="MODEL")))
    )
    clip: Dict[str, Any] = clip_field(help="the graph's clip: --num-frames and --crop-size set its fixed T, H, W")
    opset: int = field(default=18, metadata=dict(help="ONNX opset", bound=at_least(7)))
    fold_bn: bool = field(default=True, metadata=dict(help="fold BatchNorm into the convolutions"))


@dataclass
class ConvertConfig:
    """Convert a released file (caffe2 .pkl, or a PyTorch port's .pth) into a model folder."""

    source: str = field(metadata=dict(positional=True, help="caffe2 .pkl (VMZ) or .pth/.pt (PyTorch ports)"))
    model: str = field(metadata=dict(help="registry tag (arch.tag) or architecture"))
    out: str = field(metadata=dict(flag=("-o", "--out"), help="output directory"))
    verify: bool = field(default=False, metadata=dict(help="run a fixed clip and write verify.json"))


@dataclass
class VerifyWeightsConfig(Checked):
    """Fetch every source of a weight tag, convert each, and compare their outputs on a fixed clip with the original's.

    Mirrors without a published hash are used by create_model only after this command has matched them."""

    name: str = field(metadata=dict(positional=True, help="weight tag (arch.tag) or alias"))
    rtol: float = field(
        default=1e-3, metadata=dict(help="largest allowed difference, relative to the reference's", bound=above(0))
    )
    frames: Optional[int] = field(
        default=None, metadata=dict(help="clip length (default: the weight's)", bound=at_least(1))
    )
    size: Optional[int] = field(
        default=None, metadata=dict(help="clip height and width (default: the weight's)", bound=at_least(1))
    )
    cache_dir: Optional[str] = field(default=None, metadata=dict(help="download folder (default: torch hub cache)"))


@dataclass
class PublishConfig:
    """Maintainers: push weight tags to the Hugging Face Hub, one repo per tag (ORG/arch.tag).

    Needs a token with write access to ORG (HF_TOKEN or `hf auth login`)."""

    org: str = field(default=HF_HUB_ORG, metadata=dict(help="Hub organisation or user"))
    tags: Tuple[str, ...] = field(default=(), metadata=dict(help="arch.tag names (default: every weight tag)"))
    dry_run: Optional[str] = field(
        default=None, metadata=dict(metavar="DIR", help="write the repo folders to DIR/ORG/arch.tag, push nothing")
    )
    private: bool = field(default=False, metadata=dict(help="create private repos"))
    cache_dir: Optional[str] = field(default=None, metadata=dict(help="download folder (default: torch hub cache)"))
