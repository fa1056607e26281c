"""Re-save a PyTorch port (ig65m-pytorch, VMZ ``vmz``, torchvision ``.pth``) as safetensors + config + model card.

    python conversion/convert_torch.py --pth r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth \
        --model r2plus1d_34.ig65m_32f --out converted/r2plus1d_34.ig65m_32f --verify

The file is read with ``torch.load(weights_only=True)`` only; wrappers (``{"model": ...}``, ``{"state_dict": ...}``)
and DDP ``module.`` prefixes are removed; the load into the target architecture is strict.
"""

import sys
from typing import List, Optional

from r21d_zoo.conversion.export import build_target, cli_main, export
from r21d_zoo.models import WeightsError, get_pretrained_cfg, read_state_dict, split_model_name_tag
from r21d_zoo.models._registry import resolve_model_name


def convert(pth: str, name: str, out: str, run_verify: bool = False) -> str:
    state_dict = read_state_dict(pth)
    name = resolve_model_name(name)
    _, tag = split_model_name_tag(name)
    if "fc.weight" not in state_dict:
        raise WeightsError(f"{pth} has no fc.weight: not a VideoResNet state dict")
    num_classes = int(state_dict["fc.weight"].shape[0])
    if tag and num_classes != get_pretrained_cfg(name).num_classes:
        raise WeightsError(f"{pth} has {num_classes} classes but {name} has {get_pretrained_cfg(name).num_classes}")
    model = build_target(name, num_classes, pth, in_chans=int(state_dict["stem.0.weight"].shape[1]))
    return export(model, state_dict, out, run_verify)


def main(argv: Optional[List[str]] = None) -> int:
    return cli_main(__doc__, "pth", "PyTorch state dict (.pth/.pt)", convert, argv)


if __name__ == "__main__":
    sys.exit(main())
