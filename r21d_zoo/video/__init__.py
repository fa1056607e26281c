"""Video I/O and clip preprocessing: the reader seam (``open_video``), clip samplers, transforms, and a writer."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .reader import (
        DECODERS as DECODERS,
        Clip as Clip,
        ClipFrames as ClipFrames,
        DecoderUnavailableError as DecoderUnavailableError,
        VideoDecodeError as VideoDecodeError,
        VideoInfo as VideoInfo,
        VideoReader as VideoReader,
        DecodeOptions as DecodeOptions,
        check_decoder as check_decoder,
        open_video as open_video,
        read_clip as read_clip,
    )
    from .samplers import (
        fixed_rate_clips as fixed_rate_clips,
        random_clip as random_clip,
        sliding_clips as sliding_clips,
        uniform_clips as uniform_clips,
    )
    from .transforms import (
        VideoClassificationTransform as VideoClassificationTransform,
        create_transform as create_transform,
        normalize as normalize,
        resize_frames as resize_frames,
        train_augment as train_augment,
    )
    from .writer import write_video as write_video

_EXPORTS = {
    "DECODERS": ".reader",
    "Clip": ".reader",
    "ClipFrames": ".reader",
    "DecoderUnavailableError": ".reader",
    "DecodeOptions": ".reader",
    "VideoDecodeError": ".reader",
    "VideoInfo": ".reader",
    "VideoReader": ".reader",
    "check_decoder": ".reader",
    "open_video": ".reader",
    "read_clip": ".reader",
    "fixed_rate_clips": ".samplers",
    "random_clip": ".samplers",
    "sliding_clips": ".samplers",
    "uniform_clips": ".samplers",
    "VideoClassificationTransform": ".transforms",
    "create_transform": ".transforms",
    "normalize": ".transforms",
    "resize_frames": ".transforms",
    "train_augment": ".transforms",
    "write_video": ".writer",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
