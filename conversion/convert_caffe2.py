"""Convert a VMZ caffe2 ``.pkl`` into ``DIR/model.safetensors`` + ``config.json`` + model card.

    python conversion/convert_caffe2.py --pkl r2plus1d_34_clip32_ig65m_from_scratch_f102649996.pkl \
        --model r2plus1d_34.ig65m_32f --out converted/r2plus1d_34.ig65m_32f --verify

NAME is a registry tag (its metadata, class count and architecture args are used and checked) or a bare architecture
(class count, input channels and, for R2D, clip length are read from the blobs). The result loads with
``r21d_zoo.create_model("local-dir:DIR")``. The pickle is read with a restricted unpickler: numpy arrays only.
"""

import sys
from typing import List, Optional

from r21d_zoo.conversion.caffe2 import caffe2_to_state_dict, class_count, load_caffe2_pickle, visual_tower
from r21d_zoo.conversion.export import build_target, cli_main, export
from r21d_zoo.models import get_pretrained_cfg, split_model_name_tag
from r21d_zoo.models._registry import resolve_model_name


def convert(pkl: str, name: str, out: str, run_verify: bool = False) -> str:
    blobs = load_caffe2_pickle(pkl)
    visual = visual_tower(blobs)
    name = resolve_model_name(name)
    arch, tag = split_model_name_tag(name)
    expected = get_pretrained_cfg(name).num_classes if tag else None
    num_classes = class_count(visual) or 0
    stem = visual.get("conv1_middle_w", visual.get("conv1_w"))
    kwargs = dict(in_chans=int(stem.shape[1])) if stem is not None else {}
    if arch.startswith("r2d") and "conv1_w" in visual:
        kwargs["num_frames"] = int(visual["conv1_w"].shape[2])
    model = build_target(name, expected if expected is not None else num_classes, pkl, **kwargs)
    state_dict = caffe2_to_state_dict(blobs, model, num_classes=expected)
    return export(model, state_dict, out, run_verify)


def main(argv: Optional[List[str]] = None) -> int:
    return cli_main(__doc__, "pkl", "caffe2 blob pickle from the VMZ model zoo", convert, argv)


if __name__ == "__main__":
    sys.exit(main())
