"""Extracted features on disk: one writer and reader per file format, and :class:`FeatureStore`, the folder of them
that ``r21d-zoo extract`` writes and ``probe``, ``dedup`` (and anything else that reads features) read.

A video's features are saved under its output name (its path relative to the input folder, without extension):

- ``npy``: ``<name>.npy`` (float32/float16, clips x ...) and ``<name>.times.npy`` (float64, clips x 2: the start and
  end seconds of every clip; the last may end after the video);
- ``safetensors``: ``<name>.safetensors`` holding ``features``, ``clip_times`` and ``num_padded`` (padded frames per
  clip), with the video's info (duration, fps, ...) as JSON metadata;
- ``hdf5`` (the ``hdf5`` extra): one file, ``features.h5`` (``features-<i>-of-<n>.h5`` per shard of a sharded job),
  with one dataset per video at its output name; the dataset's attributes hold ``clip_times``, ``num_padded``, the
  video's info and the extraction settings (JSON). A video is written under ``.partial/`` in the file, then moved to
  its name, so a killed run leaves no half-written dataset under a video's name; resuming appends to the file.

The folder also holds ``extraction.json`` (the settings every file was made with) and ``manifest.jsonl`` (one line per
processed video). A new format is a :class:`FeatureFormat` registered in :data:`FEATURE_FORMATS`.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from .._errors import InputError
from .._io import atomic_write, partial_path

SETTINGS_FILE = "extraction.json"
MANIFEST_FILE = "manifest.jsonl"
RUNS_FILE = "runs.jsonl"  # a line per extraction run (or shard): engine, counts, clips/s, busy workers per stage


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

    def names_in(self, path: Path, root: Path) -> List[Tuple[str, str]]:
        """The (output name, key for :meth:`read`) of the videos in ``path``, a file this format owns under
        ``root``: one per file here."""
        return [(path.relative_to(root).as_posix()[: -len(self.suffix)], "")]

    def for_job(self, settings: Dict[str, Any], shard_id: int = 0, num_shards: int = 1) -> "FeatureFormat":
        """This format as one extraction job writes it (a single-file format names its file by shard)."""
        return self

    def finished(self, out: Path) -> Callable[[str], bool]:
        """Whether a video's outputs are all in ``out`` (by output name)."""
        return lambda name: all(p.exists() for p in self.paths(out, name))

    def discard_partial(self, out: Path, name: str) -> None:
        """Remove what a killed run left half-written for ``name`` (only the job that writes ``name`` calls it)."""
        for p in self.paths(out, name):
            partial_path(p).unlink(missing_ok=True)

    def write(self, out: Path, name: str, result: VideoFeatures, dtype: str) -> List[Path]:
        raise NotImplementedError

    def read(self, path: Path, key: str = "") -> VideoFeatures:
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

    def read(self, path: Path, key: str = "") -> VideoFeatures:
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

    def read(self, path: Path, key: str = "") -> VideoFeatures:
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            info = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        return VideoFeatures(tensors["features"], tensors["clip_times"], tensors.get("num_padded"), info)


class Hdf5Format(FeatureFormat):
    name, suffix = "hdf5", ".h5"
    PARTIAL = ".partial"

    def __init__(self, file_name: str = "features.h5", settings: Optional[Dict[str, Any]] = None):
        self.file_name, self.settings = file_name, settings or {}

    @staticmethod
    def _h5py() -> Any:
        try:
            import h5py
        except ImportError as e:
            raise InputError("--format hdf5 needs h5py: pip install 'r21d_zoo[hdf5]'") from e
        return h5py

    def paths(self, out: Path, name: str) -> List[Path]:
        return [out / self.file_name]

    def names_in(self, path: Path, root: Path) -> List[Tuple[str, str]]:
        h5py = self._h5py()
        names: List[str] = []
        try:
            with h5py.File(path, "r") as f:
                f.visititems(lambda key, obj: names.append(key) if isinstance(obj, h5py.Dataset) else None)
        except OSError as e:
            message = f"{path}: not a readable HDF5 file ({e}); move it out of the folder, or extract again"
            raise InputError(message) from e
        return [(k, k) for k in sorted(names) if not k.startswith(self.PARTIAL + "/")]

    def for_job(self, settings: Dict[str, Any], shard_id: int = 0, num_shards: int = 1) -> "FeatureFormat":
        file_name = "features.h5" if num_shards == 1 else f"features-{shard_id}-of-{num_shards}.h5"
        return Hdf5Format(file_name, settings)

    def finished(self, out: Path) -> Callable[[str], bool]:
        done = {name for f in sorted(out.glob("*.h5")) for name, _ in self.names_in(f, out)}  # every shard's file
        return done.__contains__

    def discard_partial(self, out: Path, name: str) -> None:
        """Nothing to do here: :meth:`write` clears the staging group before it stages a video, and readers skip it."""

    def write(self, out: Path, name: str, result: VideoFeatures, dtype: str) -> List[Path]:
        path = out / self.file_name
        padded = result.num_padded if result.num_padded is not None else np.zeros(len(result.features))
        with self._h5py().File(path, "a") as f:
            staged = f"{self.PARTIAL}/{name}"
            if self.PARTIAL in f:  # a killed run's; this job is the file's only writer, staging one video at a time
                del f[self.PARTIAL]
            data = f.create_dataset(staged, data=result.features.astype(dtype))
            data.attrs["clip_times"] = result.clip_times
            data.attrs["num_padded"] = padded.astype(np.int64)
            data.attrs["info"] = json.dumps(result.info, default=str)
            data.attrs["extraction"] = json.dumps(self.settings)
            f.flush()
            if name in f:  # --overwrite
                del f[name]
            f.move(staged, name)
            del f[self.PARTIAL]
        return [path]

    def read(self, path: Path, key: str = "") -> VideoFeatures:
        with self._h5py().File(path, "r") as f:
            data = f[key]
            return VideoFeatures(
                data[()], np.asarray(data.attrs["clip_times"]), np.asarray(data.attrs["num_padded"]),
                json.loads(data.attrs["info"]),
            )  # fmt: skip


FEATURE_FORMATS: Dict[str, FeatureFormat] = {f.name: f for f in (NpyFormat(), SafetensorsFormat(), Hdf5Format())}


def feature_format(name: str) -> FeatureFormat:
    if name not in FEATURE_FORMATS:
        raise ValueError(f"feature format must be one of {list(FEATURE_FORMATS)}, got {name!r}")
    return FEATURE_FORMATS[name]


def write_features(out: Path, name: str, result: VideoFeatures, format: str = "npy", dtype: str = "float32"):
    """Write one video's features atomically; returns the files written."""
    return feature_format(format).write(Path(out), name, result, dtype)


class FeatureStore:
    """The features under ``root`` in any format, by output name (``<relative path without extension>``), sorted.
    In a single-file format the input's sub-folders are groups of the file, and ``root`` may name one as if it were a
    folder: ``OUT/left`` is the videos under ``left/`` in ``OUT/features.h5``."""

    def __init__(self, root: Union[str, Path]):
        self.root = Path(root)
        base, prefix = self.root, ""
        if not base.is_dir():
            parent = next((p for p in base.parents if p.is_dir()), Path("."))
            base, prefix = parent, base.relative_to(parent).as_posix() + "/"
        self._where: Dict[str, Tuple[FeatureFormat, Path, str]] = {}  # name: format, file, key in the file
        for f in sorted(base.rglob("*")) if prefix == "" or (base / SETTINGS_FILE).exists() else []:
            fmt = next((x for x in FEATURE_FORMATS.values() if x.owns(f)), None)
            if fmt is None or not f.is_file():
                continue
            for name, key in fmt.names_in(f, base):
                if not name.startswith(prefix):
                    continue
                name = name[len(prefix) :]
                if name in self._where:
                    twice = f"{self.where(name)} and {f} both hold the features of {name}"
                    raise InputError(f"{twice} (two formats?); keep one")
                self._where[name] = (fmt, f, key)
        if prefix and not self._where:
            raise InputError(f"{root}: no such feature folder (the -o folder of r21d-zoo extract, or a folder in it)")
        self.files = {name: f for name, (_, f, _) in sorted(self._where.items())}  # each video's features file

    @property
    def names(self) -> List[str]:
        return list(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def read(self, name: str) -> VideoFeatures:
        fmt, path, key = self._where[name]
        return fmt.read(path, key)

    def where(self, name: str) -> str:
        """Where a video's features are, for messages: its file (and, in a single-file format, its key)."""
        _, path, key = self._where[name]
        return f"{path}:{key}" if key else str(path)

    def by_stem(self) -> Dict[str, str]:
        """Output names by their last component (the video's file name without extension), for matching features to
        the videos of a label file; two videos with one file name are an error."""
        stems: Dict[str, str] = {}
        for name in self.files:
            stem = name.rsplit("/", 1)[-1]
            if stem in stems:
                raise InputError(
                    f"{self.where(stems[stem])} and {self.where(name)} share the name {stem!r}; videos are matched "
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
