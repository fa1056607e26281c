"""Extracted features on disk: one writer and reader per file format, and :class:`FeatureStore`, the folder of them
that ``r21d-zoo extract`` writes and ``probe``, ``dedup`` (and anything else that reads features) read.

A video's features are saved under its output name (its path relative to the input folder, without extension):

- ``npy``: ``<name>.npy`` (float32/float16, clips x ...) and ``<name>.times.npy`` (float64, clips x 2: the start and
  end seconds of every clip; the last may end after the video);
- ``safetensors``: ``<name>.safetensors`` holding ``features``, ``clip_times`` and ``num_padded`` (padded frames per
  clip), with the video's info (duration, fps, ...) as JSON metadata.

The folder also holds ``extraction.json`` (the settings every file was made with) and ``manifest.jsonl`` (one line per
processed video). A new format is a :class:`FeatureFormat` registered in :data:`FEATURE_FORMATS`.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from .._errors import InputError
from .._io import atomic_write

SETTINGS_FILE = "extraction.json"
MANIFEST_FILE = "manifest.jsonl"


@dataclass
class VideoFeatures:
    features: np.ndarray  # (num_clips, ...)
    clip_times: np.ndarray  # float64 (num_clips, 2): start, end seconds (the last may end after the video)
    num_padded: Optional[np.ndarray] = None  # int (num_clips,): padded frames per clip (not kept by every format)
    info: Dict[str, Any] = field(default_factory=dict)


class FeatureFormat:
    """How one video's features are stored: its files (the features file last: written last, so a video counts as
    done only when all exist), how to write them atomically and how to read them back."""

    name: str = ""
    suffix: str = ""  # of the features file, which names the video

    def paths(self, out: Path, name: str) -> List[Path]:
        return [out / f"{name}{self.suffix}"]

    def owns(self, path: Path) -> bool:
        """Whether ``path`` is the features file of a video in this format."""
        return path.name.endswith(self.suffix)

    def write(self, out: Path, name: str, result: VideoFeatures, dtype: str) -> List[Path]:
        raise NotImplementedError

    def read(self, path: Path) -> VideoFeatures:
        raise NotImplementedError


class NpyFormat(FeatureFormat):
    name, suffix = "npy", ".npy"

    def paths(self, out: Path, name: str) -> List[Path]:
        return [out / f"{name}.times.npy", out / f"{name}.npy"]

    def owns(self, path: Path) -> bool:
        return path.suffix == ".npy" and not path.name.endswith(".times.npy")

    def write(self, out: Path, name: str, result: VideoFeatures, dtype: str) -> List[Path]:
        features = result.features.astype(dtype)
        paths = self.paths(out, name)
        atomic_write(paths[0], lambda f: np.save(f, result.clip_times))
        atomic_write(paths[1], lambda f: np.save(f, features))
        return paths

    def read(self, path: Path) -> VideoFeatures:
        times = path.with_name(path.name[: -len(".npy")] + ".times.npy")
        features = np.load(path)
        clip_times = np.load(times) if times.exists() else np.zeros((0, 2))
        return VideoFeatures(features, clip_times)


class SafetensorsFormat(FeatureFormat):
    name, suffix = "safetensors", ".safetensors"

    def write(self, out: Path, name: str, result: VideoFeatures, dtype: str) -> List[Path]:
        from safetensors.numpy import save

        padded = result.num_padded if result.num_padded is not None else np.zeros(len(result.features))
        data = save(
            dict(
                features=result.features.astype(dtype),
                clip_times=result.clip_times,
                num_padded=padded.astype(np.int64),
            ),
            metadata={k: json.dumps(v) for k, v in result.info.items()},
        )
        paths = self.paths(out, name)
        atomic_write(paths[0], lambda f: f.write(data))
        return paths

    def read(self, path: Path) -> VideoFeatures:
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            info = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        return VideoFeatures(tensors["features"], tensors["clip_times"], tensors.get("num_padded"), info)


FEATURE_FORMATS: Dict[str, FeatureFormat] = {f.name: f for f in (NpyFormat(), SafetensorsFormat())}


def feature_format(name: str) -> FeatureFormat:
    if name not in FEATURE_FORMATS:
        raise ValueError(f"feature format must be one of {list(FEATURE_FORMATS)}, got {name!r}")
    return FEATURE_FORMATS[name]


def write_features(out: Path, name: str, result: VideoFeatures, format: str = "npy", dtype: str = "float32"):
    """Write one video's features atomically; returns the files written."""
    return feature_format(format).write(Path(out), name, result, dtype)


class FeatureStore:
    """The features under ``root`` in any format, by output name (``<relative path without extension>``), sorted."""

    def __init__(self, root: Union[str, Path]):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{root}: no such feature folder (the -o folder of r21d-zoo extract)")
        files: Dict[str, Path] = {}
        for f in sorted(self.root.rglob("*")):
            fmt = next((x for x in FEATURE_FORMATS.values() if x.owns(f)), None)
            if fmt is None or not f.is_file():
                continue
            name = f.relative_to(self.root).as_posix()[: -len(fmt.suffix)]
            if name in files:
                raise InputError(f"{files[name]} and {f} are features of one video in two formats; keep one")
            files[name] = f
        self.files = dict(sorted(files.items()))

    @property
    def names(self) -> List[str]:
        return list(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def read(self, name: str) -> VideoFeatures:
        path = self.files[name]
        fmt = next(x for x in FEATURE_FORMATS.values() if x.owns(path))
        return fmt.read(path)

    def by_stem(self) -> Dict[str, str]:
        """Output names by their last component (the video's file name without extension), for matching features to
        the videos of a label file; two videos with one file name are an error."""
        stems: Dict[str, str] = {}
        for name in self.files:
            stem = name.rsplit("/", 1)[-1]
            if stem in stems:
                raise InputError(
                    f"{self.files[stems[stem]]} and {self.files[name]} share the name {stem!r}; videos are matched "
                    "to their features by file name"
                )
            stems[stem] = name
        return stems

    def settings(self) -> Optional[Dict[str, Any]]:
        """The settings the features were extracted with (``extraction.json``), None when the folder has none."""
        path = self.root / SETTINGS_FILE
        return json.loads(path.read_text()) if path.exists() else None


RECORDED_ONLY = ("r21d_zoo_version", "int8_agreement")  # in extraction.json for people, not compared on resume


def flat_settings(settings: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``extraction.json`` as dotted keys (``weights.sha256``, ``clip.num_frames`` ...), without what is recorded
    only (the package version, int8's measured agreement)."""
    out: Dict[str, Any] = {}
    for k, v in settings.items():
        if k in RECORDED_ONLY:
            continue
        out.update(flat_settings(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


# What makes two folders' features comparable: the weights, the layer and pooling, the clip's preprocessing, mirroring
# (not the model's name, the file format, the stored dtype or where clips start)
COMPARABLE = ("weights.architecture", "weights.sha256", "layer", "spatial_pool", "temporal_pool", "clip.", "mirror")


def extraction_differences(a: FeatureStore, b: FeatureStore) -> List[str]:
    """The settings that make the features of ``a`` and ``b`` incomparable, as ``key: A vs B``; empty when they are
    alike or when a folder has no ``extraction.json`` (nothing to compare)."""
    sa, sb = a.settings(), b.settings()
    if sa is None or sb is None:
        return []
    fa, fb = flat_settings(sa), flat_settings(sb)
    keys = [k for k in sorted(set(fa) | set(fb)) if k.startswith(COMPARABLE)]
    return [f"{k}: {fa.get(k)!r} vs {fb.get(k)!r}" for k in keys if fa.get(k) != fb.get(k)]
