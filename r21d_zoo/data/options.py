"""How labelled videos are read, as a command's options: importable without torch, so the command line can describe
them at once; :meth:`LabelOptions.read` loads the readers of :mod:`r21d_zoo.data.labelled`."""

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Sequence, Union

from .._bounds import Checked, between
from .._options import frames_fps_field

if TYPE_CHECKING:
    from .labelled import LabelledVideos

_logger = logging.getLogger(__name__)

LABEL_FORMAT_NAMES = ("kinetics", "epic", "ssv2", "hmdb51", "folders", "csv", "list")  # data.labelled.LABEL_FORMATS


@dataclass
class LabelOptions(Checked):
    """How labelled videos are read: the annotation format, the columns (by header name), where the videos are, the
    split, and what happens to labels outside the classes."""

    label_format: Optional[str] = field(
        default=None,
        metadata=dict(help="annotation format (default: detected from the files)", choices=LABEL_FORMAT_NAMES),
    )
    path_column: Optional[str] = field(default=None, metadata=dict(help="CSV header name of the path column"))
    label_column: Optional[str] = field(
        default=None, metadata=dict(help="CSV header name of the label column (EPIC-Kitchens: verb or noun)")
    )
    video_root: Optional[str] = field(
        default=None, metadata=dict(help="folder of an annotation file's videos (default: the file's folder)")
    )
    split: int = field(
        default=1, metadata=dict(help="which split of a split folder (HMDB51: 1-3)", bound=between(1, 3))
    )
    exclude_unknown: bool = field(
        default=False, metadata=dict(help="leave out (and count) rows whose label is not a class, instead of failing")
    )
    exclude: Optional[str] = field(
        default=None, metadata=dict(help="leave out the videos listed in this file (e.g. check-videos' bad.txt)")
    )
    frames_fps: Optional[float] = frames_fps_field()

    def read(
        self, source: Union[str, os.PathLike], classes: Optional[Sequence[str]] = None, subset: str = "train"
    ) -> "LabelledVideos":
        """The labelled videos of ``source``; ``subset`` (``"train"``/``"test"``/``"all"``) picks the part of a split
        file."""
        from .inputs import read_video_list
        from .labelled import read_labelled

        data = read_labelled(
            source,
            classes,
            self.path_column,
            self.label_column,
            self.exclude_unknown,
            self.label_format,
            self.video_root,
            self.split,
            subset,
            read_video_list(self.exclude),
            self.frames_fps,
        )
        _logger.info("read %s", data.describe())
        return data
