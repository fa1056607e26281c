"""Fast start: ``import r21d_zoo`` and every ``--help`` or usage error answer without the heavy libraries. Checked by
the modules a fresh interpreter has loaded, never by a time (``bench/bench_startup.py`` measures the times)."""

import json
import subprocess
import sys

HEAVY = ("torch", "numpy", "torchvision", "timm", "av", "cv2", "gradio", "onnx", "onnxruntime", "h5py", "matplotlib")
LIGHT_OURS = (  # settings only
    "r21d_zoo.models._pretrained",
    "r21d_zoo.data.options",
    "r21d_zoo.jobs.configs",
    "r21d_zoo.commands.configs",
)


def _loaded_after(code: str) -> list:
    """The modules a fresh interpreter holds after running ``code``, as printed JSON."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _heavy(modules: list) -> list:
    """Heavy libraries, and our modules below a layer's face other than the settings (``config`` modules)."""
    ours = [m for m in modules if m.count(".") > 1 and m.startswith("r21d_zoo.") and not m.endswith(".config")]
    return [m for m in modules if m.split(".")[0] in HEAVY] + [m for m in ours if m not in LIGHT_OURS]


def test_import_r21d_zoo_loads_no_heavy_library_and_no_task():
    assert _heavy(_loaded_after("import r21d_zoo")) == []


def test_public_names_load_on_first_use_and_checkers_see_them():
    loaded = _loaded_after("import r21d_zoo\nassert callable(r21d_zoo.create_model)\nassert 'predict' in dir(r21d_zoo)")
    assert "torch" in loaded and "r21d_zoo.models.video_resnet" in loaded
    assert not any(m.startswith(("r21d_zoo.train.", "r21d_zoo.jobs.")) for m in loaded)  # the model API alone
    import r21d_zoo

    assert set(r21d_zoo.__all__) >= {"create_model", "extract_features", "predict", "grad_cam", "ExtractConfig"}


def test_help_of_every_command_and_usage_errors_import_no_heavy_library():
    """``r21d-zoo --help``, each ``r21d-zoo COMMAND --help`` and a usage error, in one interpreter."""
    code = """
import contextlib, io
from r21d_zoo.cli import command_table, main
argvs = [["--help"], ["extract", "--no-such-flag"], ["predict", "v.mp4", "--top-k", "0"], ["extract", "v.mp4"]]
argvs += [[*w, "--help"] for w in command_table()]
for argv in argvs:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
        assert code in (0, 2), (argv, code)
"""
    assert _heavy(_loaded_after(code)) == []


def test_timm_knows_the_architectures_whichever_is_imported_first():
    for order in ("import r21d_zoo\nimport timm", "import timm\nimport r21d_zoo"):
        code = order + "\nassert timm.is_model('r2plus1d_18') and timm.is_model('ir_csn_152'), timm.list_models('r2*')"
        _loaded_after(code)  # check=True: an AssertionError fails the run
