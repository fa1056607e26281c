"""The model zoo: architectures (importing them registers their entrypoints), the registry and builder, weight files
and their fetching and loading, and weight surgery. Everything other layers use is exported here; the ``_*`` modules
are private to this package.

Importing this package is light: the names of :mod:`._pretrained` (the clip and weight-file schema) load alone, and
any other name first loads the architectures (which registers their entrypoints, here and in timm's registry)."""

import importlib
import importlib.util
import sys
from importlib.abc import Loader, MetaPathFinder
from typing import TYPE_CHECKING, Any

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from . import video_resnet as video_resnet
    from ._base import VideoModel as VideoModel, input_channels as input_channels, stage_modules as stage_modules
    from ._builder import build_model_with_cfg as build_model_with_cfg
    from ._caffe2 import (
        CONVERTER_VERSION as CONVERTER_VERSION,
        caffe2_to_state_dict as caffe2_to_state_dict,
        class_count as class_count,
        load_caffe2_pickle as load_caffe2_pickle,
        visual_tower as visual_tower,
    )
    from ._download import (
        OFFLINE_HINT as OFFLINE_HINT,
        cached_path as cached_path,
        download_url as download_url,
        write_verification as write_verification,
    )
    from ._factory import create_model as create_model, from_pretrained as from_pretrained
    from ._features import FeatureListNet as FeatureListNet, feature_take_indices as feature_take_indices
    from ._files import (
        WeightsError as WeightsError,
        load_weights_only as load_weights_only,
        model_config as model_config,
        read_state_dict as read_state_dict,
        sha256_file as sha256_file,
        state_dict_sha256 as state_dict_sha256,
    )
    from ._inflate import inflate as inflate
    from ._loading import load_into_model as load_into_model
    from ._pretrained import (
        CROP_MODES as CROP_MODES,
        FLOW_MEAN as FLOW_MEAN,
        FLOW_METHODS as FLOW_METHODS,
        FLOW_STD as FLOW_STD,
        HF_HUB_ORG as HF_HUB_ORG,
        ClipSpec as ClipSpec,
        PretrainedCfg as PretrainedCfg,
        evaluation_protocol as evaluation_protocol,
        generate_default_cfgs as generate_default_cfgs,
        load_label_names as load_label_names,
        metric_value as metric_value,
        set_derived_cfg as set_derived_cfg,
    )
    from ._registry import (
        get_pretrained_cfg as get_pretrained_cfg,
        is_model as is_model,
        list_aliases as list_aliases,
        list_models as list_models,
        list_pretrained as list_pretrained,
        model_entrypoint as model_entrypoint,
        register_model as register_model,
        resolve_model_name as resolve_model_name,
        split_model_name_tag as split_model_name_tag,
    )
    from ._surgery import (
        InflationError as InflationError,
        adapt_input_conv as adapt_input_conv,
        inflate_state_dict as inflate_state_dict,
    )
    from .video_resnet import VideoResNet as VideoResNet
    from ._timm import register_in_timm as register_in_timm

_EXPORTS = {
    "VideoModel": "._base",
    "input_channels": "._base",
    "stage_modules": "._base",
    "build_model_with_cfg": "._builder",
    "CONVERTER_VERSION": "._caffe2",
    "caffe2_to_state_dict": "._caffe2",
    "class_count": "._caffe2",
    "load_caffe2_pickle": "._caffe2",
    "visual_tower": "._caffe2",
    "OFFLINE_HINT": "._download",
    "cached_path": "._download",
    "download_url": "._download",
    "write_verification": "._download",
    "create_model": "._factory",
    "from_pretrained": "._factory",
    "FeatureListNet": "._features",
    "feature_take_indices": "._features",
    "WeightsError": "._files",
    "load_weights_only": "._files",
    "model_config": "._files",
    "read_state_dict": "._files",
    "sha256_file": "._files",
    "state_dict_sha256": "._files",
    "inflate": "._inflate",
    "load_into_model": "._loading",
    "CROP_MODES": "._pretrained",
    "FLOW_MEAN": "._pretrained",
    "FLOW_METHODS": "._pretrained",
    "FLOW_STD": "._pretrained",
    "HF_HUB_ORG": "._pretrained",
    "ClipSpec": "._pretrained",
    "PretrainedCfg": "._pretrained",
    "evaluation_protocol": "._pretrained",
    "generate_default_cfgs": "._pretrained",
    "load_label_names": "._pretrained",
    "metric_value": "._pretrained",
    "set_derived_cfg": "._pretrained",
    "get_pretrained_cfg": "._registry",
    "is_model": "._registry",
    "list_aliases": "._registry",
    "list_models": "._registry",
    "list_pretrained": "._registry",
    "model_entrypoint": "._registry",
    "register_model": "._registry",
    "resolve_model_name": "._registry",
    "split_model_name_tag": "._registry",
    "InflationError": "._surgery",
    "adapt_input_conv": "._surgery",
    "inflate_state_dict": "._surgery",
    "VideoResNet": ".video_resnet",
    "register_in_timm": "._timm",
}
_LIGHT = {name for name, module in _EXPORTS.items() if module == "._pretrained"}  # the schema: no torch
__all__ = sorted(_EXPORTS)
_getattr, __dir__ = lazy_exports(__name__, _EXPORTS)


_loaded = False


def _load_architectures() -> None:
    """Import the architectures (registering their entrypoints) and make them timm models, once."""
    global _loaded
    if not _loaded:
        _loaded = True
        importlib.import_module(".video_resnet", __name__)
        importlib.import_module("._timm", __name__).register_in_timm()


def __getattr__(name: str) -> Any:
    if name not in _LIGHT:
        _load_architectures()
        if name == "video_resnet":
            return globals()[name]
    return _getattr(name)


class _AfterTimm(MetaPathFinder):
    """Registers the architectures in timm's registry right after ``import timm``, so ``timm.create_model`` knows
    them as soon as both packages are imported, in either order, without ``import r21d_zoo`` importing timm."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("timm")
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisterAfter(spec.loader)
        return spec


class _RegisterAfter(Loader):
    def __init__(self, loader: Loader):
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        _load_architectures()


if "timm" in sys.modules:
    _load_architectures()
else:
    sys.meta_path.insert(0, _AfterTimm())
