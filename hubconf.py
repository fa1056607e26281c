"""torch.hub entrypoints: every architecture in the r21d_zoo registry, e.g.

torch.hub.load("<repo or dir>", "r2plus1d_34", pretrained=True)  # default weights of the architecture
torch.hub.load("<repo or dir>", "r2plus1d_34", pretrained_tag="ig65m_32f", pretrained=True)
"""

dependencies = ["torch", "numpy"]  # safetensors / huggingface_hub / av are imported only when used

import r21d_zoo as _r21d_zoo
from r21d_zoo.models import model_entrypoint as _entrypoint


def _hub_entrypoint(_arch):
    def entrypoint(pretrained=False, pretrained_tag=None, **kwargs):
        name = f"{_arch}.{pretrained_tag}" if pretrained_tag else _arch
        return _r21d_zoo.create_model(name, pretrained=pretrained, **kwargs)

    entrypoint.__name__ = _arch
    entrypoint.__doc__ = (
        f"{_entrypoint(_arch).__doc__}\n\nWeights (pass pretrained_tag=...): "
        f"{', '.join(n.split('.', 1)[1] for n in _r21d_zoo.list_pretrained(_arch))}.\n"
        "kwargs go to r21d_zoo.create_model (num_classes, in_chans, drop_rate, checkpoint_path, ...)."
    )
    return entrypoint


globals().update({_arch: _hub_entrypoint(_arch) for _arch in _r21d_zoo.list_models()})
