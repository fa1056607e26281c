"""Conversion cache: loading a caffe2-sourced weight converts the ``.pkl`` once; later loads read the cached
safetensors. Measured on a synthetic R(2+1)D-152 pickle with the real blob names and shapes (IG-65M, 359 classes),
in one run: converting the pickle vs reading the cache entry (checksum verified), each as ``load_weights`` does it.

    python bench/bench_conversion_cache.py
"""

import argparse
import pickle
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
from _common import print_table, write_json  # noqa: E402
from caffe2_reference import synth_blobs  # noqa: E402

import r21d_zoo  # noqa: E402
from r21d_zoo.models import read_state_dict  # noqa: E402
from r21d_zoo.models._files import converted_caffe2  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", default="r2plus1d_152.ig65m_32f")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="bench/results/conversion_cache.json")
    args = parser.parse_args()
    model = r21d_zoo.create_model(args.tag)  # real (not meta) tensors: the conversion fills a real state dict
    cfg = r21d_zoo.get_pretrained_cfg(args.tag)
    with tempfile.TemporaryDirectory() as tmp:
        pkl = Path(tmp) / cfg.source_file
        with open(pkl, "wb") as f:
            pickle.dump({"blobs": synth_blobs("r2plus1d", 152, cfg.num_classes)}, f, protocol=2)
        first = timed(lambda: converted_caffe2(str(pkl), model))  # converts and writes the cache entry
        convert = min(timed(lambda: read_state_dict(str(pkl), model)) for _ in range(args.repeats))
        cached = min(timed(lambda: converted_caffe2(str(pkl), model)) for _ in range(args.repeats))
        ref, hit = read_state_dict(str(pkl), model), converted_caffe2(str(pkl), model)
        same = ref.keys() == hit.keys() and all(torch.equal(ref[k], hit[k]) for k in ref)
        size_mb = pkl.stat().st_size / 2**20
    results = dict(pickle_mb=size_mb, first_load_s=first, convert_s=convert, cached_s=cached, identical=same)
    rows = [
        dict(
            measurement=f"{args.tag} weights from a {size_mb:.0f} MB caffe2 pickle (identical tensors: {same})",
            ours=f"cached load {cached:.2f} s",
            baseline=f"conversion {convert:.2f} s (first load incl. cache write {first:.2f} s)",
            ratio=f"{cached / convert:.3f}",
        )
    ]
    print_table(rows, ["measurement", "ours", "baseline", "ratio"])
    write_json(args.json, dict(results=results, rows=rows))
    assert same, "the cache returned other tensors than the conversion"


if __name__ == "__main__":
    main()
