"""evaluate's pictures at the size of Kinetics-400: the confusions listed are the largest, the bars sorted."""

import numpy as np
from PIL import Image

from r21d_zoo.infer.figures import plot_confusion, plot_per_class, top_confusions


def test_top_confusions_are_the_largest_off_diagonal_counts_with_their_share():
    confusion = np.array([[5, 3, 0], [1, 8, 1], [0, 4, 0]])
    found = top_confusions(confusion, ["a", "b", "c"], n=3)
    assert [(c["true"], c["predicted"], c["count"]) for c in found] == [("c", "b", 4), ("a", "b", 3), ("b", "a", 1)]
    assert found[0]["share"] == 1.0 and found[1]["share"] == 3 / 8
    assert top_confusions(np.eye(3, dtype=int) * 4, ["a", "b", "c"]) == []  # nothing confused, nothing listed


def test_400_classes_give_readable_pictures(tmp_path):
    k, rng = 400, np.random.default_rng(0)
    confusion = np.diag(rng.integers(5, 50, k))
    confusion[7, 3] = 60  # the worst confusion of all
    classes = [f"class {i:03d}" for i in range(k)]
    path = plot_confusion(confusion, classes, tmp_path / "confusion.png")
    width, height = Image.open(path).size
    assert 2000 <= height <= 2500 and width > height  # capped at 24 in, the confusion list beside the matrix
    recall = {c: float(confusion[i, i] / confusion[i].sum()) for i, c in enumerate(classes)}
    recall["class 399"] = None  # no videos: left out
    bars = Image.open(plot_per_class(recall, tmp_path / "per_class.png"))
    assert bars.size[1] >= 0.16 * 399 * 100  # a bar's row per class, tall enough for its label
