"""The model zoo: architectures (importing them registers their entrypoints), the registry and builder, weight files
and their fetching and loading, and weight surgery. Everything other layers use is exported here; the ``_*`` modules
are private to this package."""

from . import video_resnet as video_resnet
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
    resolve_model_name as resolve_model_name,
    split_model_name_tag as split_model_name_tag,
)
from ._surgery import (
    InflationError as InflationError,
    adapt_input_conv as adapt_input_conv,
    inflate_state_dict as inflate_state_dict,
)
from .video_resnet import VideoResNet as VideoResNet
from ._timm import register_in_timm

register_in_timm()
