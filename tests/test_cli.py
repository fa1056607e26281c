"""The command line is generated from the job configs: its defaults are the dataclasses' by construction."""

import argparse
from pathlib import Path
import dataclasses
import json
import re
import typing
from typing import Dict, List

import pytest

from r21d_zoo import __version__
from r21d_zoo.cli import COMMANDS, build_parser, command_table, config_from_args, field_default, main
from r21d_zoo.infer.config import ModelSource


def _required_args(cls):
    """argv and field values for the required fields of a command's config (top level only, as in every job)."""
    argv, values = [], {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if field_default(f) is not dataclasses.MISSING:
            continue
        many = typing.get_origin(hints[f.name]) in (list, typing.List)
        value = ["a.mp4", "b.mp4"] if many else 3 if hints[f.name] is int else "x"
        values[f.name] = value
        if f.metadata.get("positional"):
            argv += value if many else [str(value)]
        else:
            flags = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            flag = flags if isinstance(flags, str) else flags[-1]
            for v in value if many else [value]:
                argv += [flag, str(v)]
    return argv, values


@pytest.mark.parametrize("words", list(command_table()), ids=" ".join)
def test_every_cli_default_equals_its_dataclass_default(words):
    command = command_table()[words]
    argv, values = _required_args(command.config)
    parsed = config_from_args(command.config, build_parser().parse_args([*words, *argv]))
    assert parsed == command.config(**values)


def test_options_reach_nested_configs_and_the_clip_overrides():
    args = build_parser().parse_args(
        [
            "finetune",
            "--train",
            "t.csv",
            "-o",
            "out",
            "--lr",
            "0.5",
            "--num-frames",
            "4",
            "--resize",
            "64",
            "80",
            "--crop",
            "three",
            "--random-weights",
            "--model-args",
            '{"drop_rate": 0.1}',
            "--no-flip",
            "--accumulation",
            "3",
        ]
    )
    cfg = config_from_args(COMMANDS["finetune"].config, args)
    s = cfg.settings
    assert s.optim.lr == 0.5 and s.optim.epochs == 8 and s.accumulation == 3 and s.flip is False
    assert s.clip == {"num_frames": 4, "resize_size": (64, 80), "crop_mode": "three"}
    assert s.model == ModelSource("r2plus1d_34.ig65m_32f", pretrained=False, model_args={"drop_rate": 0.1})
    distill = config_from_args(
        COMMANDS["distill"].config,
        build_parser().parse_args(["distill", "v", "-o", "o", "--teacher", "a", "--teacher", "b"]),
    )
    assert distill.teacher == ["a", "b"] and distill.settings.clip == {"num_frames": 8}


def test_random_init_flag_is_the_same_everywhere():
    for words in command_table():
        parser = build_parser()
        for word in words:
            parser = parser._subparsers._group_actions[0].choices[word]
        text, name = parser.format_help(), words[0]
        if name in ("convert", "pretrain", "distill"):  # a file's tag; architectures that always start at random
            continue
        if re.search(r"--model(?![-\w])", text):  # not --model-args
            assert "--random-weights" in text, name


DEPRECATED = [  # old flag, its value (None: a switch), the command, the field it sets (one name per concept since 0.x)
    ("--eval-clips", "3", ["finetune", "--train", "t.csv", "-o", "o"], ("settings", "num_clips"), 3),
    ("--arch", "r3d_18", ["pretrain", "s", "-o", "o"], ("settings", "model"), "r3d_18"),
    ("--policy", "uniform", ["pretrain", "s", "-o", "o"], ("settings", "sampling"), "uniform"),
    ("--student", "r3d_18", ["distill", "v", "-o", "o", "--teacher", "t"], ("settings", "model"), "r3d_18"),
    ("--student-args", '{"a": 1}', ["distill", "v", "-o", "o", "--teacher", "t"], ("settings", "model_args"), {"a": 1}),
    ("--optimize", None, ["extract", "v", "-o", "o"], ("runtime",), "torch"),
]


@pytest.mark.parametrize("old, value, argv, path, expected", DEPRECATED, ids=[d[0] for d in DEPRECATED])
def test_old_flags_still_work_for_one_release_with_a_warning(old, value, argv, path, expected, capsys):
    given = [old] if value is None else [old, value]
    cfg = config_from_args(COMMANDS[argv[0]].config, build_parser().parse_args(argv + given))
    for name in path:
        cfg = getattr(cfg, name)
    assert cfg == expected
    assert f"warning: {old} is deprecated and will be removed in the next release; use --" in capsys.readouterr().err
    help_text = build_parser()._subparsers._group_actions[0].choices[argv[0]].format_help()
    assert not re.search(rf"{old}(?![-\w])", help_text)  # hidden: --help shows the one name


def test_each_option_is_named_as_its_field_one_name_per_concept():
    """The flag of every option is its config field's name (the API keyword), but for the documented exceptions."""
    exceptions = {"out", "name", "pretrained", "checkpoint_path"}  # -o/--out, --model, --random-weights, --checkpoint
    differing = set()

    def walk(cls):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name])
            elif "flag" in f.metadata:
                flags = f.metadata["flag"]
                flags = (flags,) if isinstance(flags, str) else flags
                if "--" + f.name.replace("_", "-") not in flags:
                    differing.add(f.name)

    for command in command_table().values():
        walk(command.config)
    assert differing <= exceptions, differing - exceptions


def test_bad_json_is_a_usage_error_naming_the_problem(capsys):
    with pytest.raises(SystemExit) as e:
        main(["extract", "v.mp4", "-o", "out", "--model-args", "{bad"])
    assert e.value.code == 2 and "--model-args" in capsys.readouterr().err


def test_one_entry_style_with_version_and_every_command(capsys):
    """``python -m r21d_zoo`` itself runs in test_registry and test_extract (subprocesses); here: what it shows."""
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"r21d-zoo {__version__}"
    helps = build_parser().format_help()
    for name in ("list", "info", "demo", "extract", "finetune", "evaluate", "probe", "distill", "convert", "cards"):
        assert f"    {name}" in helps, name
    assert "synthetic" in helps


@pytest.mark.video
def test_synthetic_command_writes_the_dataset(tmp_path):
    assert (
        main(
            [
                "synthetic",
                str(tmp_path),
                "--videos-per-class",
                "2",
                "--val-per-class",
                "1",
                "--frames",
                "8",
                "--size",
                "32",
                "--directions",
                "up",
                "down",
            ]
        )
        == 0
    )
    rows = (tmp_path / "train.csv").read_text().splitlines()
    assert rows[0] == "path,label" and len(rows) == 5 and {r.split(",")[1] for r in rows[1:]} == {"up", "down"}
    assert (
        json.dumps(sorted(p.name for p in (tmp_path / "up").iterdir())) == '["up_000.mp4", "up_001.mp4", "up_002.mp4"]'
    )


# Impossible values of every numeric option of every command (0 and -1 where they mean nothing, and the values just
# past a range's end); an option missing here fails the coverage test, so a new option needs its bound decided.
IMPOSSIBLE = {
    "--smooth": ["0"],
    "--port": ["0", "65536"],
    "--start": ["-1"],
    "--top-k": ["0"],
    "--batch-size": ["0", "-1"],
    "--accumulation": ["0", "-1"],
    "--workers": ["-1"],
    "--seed": ["-1"],
    "--lr": ["0", "-1", "inf"],
    "--reference-batch": ["0", "-1"],
    "--momentum": ["-1", "1", "nan"],
    "--weight-decay": ["-1"],
    "--epochs": ["0", "-1"],
    "--warmup-epochs": ["-1"],
    "--step-epochs": ["0", "-1"],
    "--gamma": ["0", "-1", "1.5"],
    "--samples": ["0", "-1"],
    "--warmup-samples": ["-1"],
    "--halvings": ["-1"],
    "--shuffle-buffer": ["0", "-1"],
    "--checkpoint-every": ["0", "-1"],
    "--freeze-stages": ["-1", "6"],
    "--backbone-lr-mult": ["-1"],
    "--num-clips": ["0", "-1", "-2"],
    "--calibration-clips": ["0", "-1"],
    "--teacher-frames": ["0", "-1"],
    "--temperature": ["0", "-1"],
    "--entropy-threshold": ["-1"],
    "--stride-sec": ["0", "-1"],
    "--feature-fps": ["0", "-1"],
    "--segments": ["0", "-1"],
    "--shard-id": ["-1"],
    "--num-shards": ["0", "-1"],
    "--num-frames": ["0", "-1"],
    "--frame-rate": ["0", "-1"],
    "--sampling-stride": ["0", "-1"],
    "--resize": ["0", "-1"],
    "--crop-size": ["0", "-1"],
    "--std": ["0", "-1"],
    "--mean": [],  # any finite mean is a mean (every float option refuses nan and inf: see below)
    "--rtol": ["0", "-1"],
    "--frames": ["0", "-1"],
    "--size": ["0", "-1"],
    "--opset": ["0", "-1"],
    "--videos-per-class": ["0", "-1"],
    "--val-per-class": ["-1"],
    "--smallest": ["0", "-1"],
    "--threshold": ["-1.5", "1.5"],
    "--grid": ["0", "-1"],
    "--shard-mb": ["0", "-1"],
    "--max-per-shard": ["0", "-1"],
    "--n": ["0", "-1"],
    "--split": ["0", "-1", "4"],
    "--frames-fps": ["0", "-1", "nan", "inf"],
    "--jitter-scales": ["0", "-1", "128"],
    "--mixup-alpha": ["-1", "nan", "inf"],
    "--cutmix-alpha": ["-1", "nan", "inf"],
    "--flow-weight": ["-0.1", "1.5", "nan"],
    "--reconnect": ["-1"],
}


def _numeric_options():
    """(command words, long flag) for every numeric option the parser has (deprecated aliases aside)."""
    parser = build_parser()
    found = []
    for words in command_table():
        sub = parser._subparsers._group_actions[0].choices[words[0]]
        if len(words) > 1:
            sub = sub._subparsers._group_actions[0].choices[words[1]]
        for action in sub._actions:
            if action.type in (int, float) and action.option_strings and action.help != argparse.SUPPRESS:
                found.append((words, max(action.option_strings, key=len), action.type))
    return found


def _impossible(flag: str, kind: type) -> list:
    """The listed impossible values of a flag, plus NaN and infinity for every float (``--mean nan`` once gave
    all-NaN features marked ok)."""
    listed = IMPOSSIBLE.get(flag, [])
    return listed + [v for v in ("nan", "inf") if kind is float and v not in listed]


def test_every_numeric_option_has_its_impossible_values_listed():
    missing = sorted({flag for _, flag, _ in _numeric_options()} - set(IMPOSSIBLE))
    assert not missing, f"decide the valid range of {missing} (field metadata bound=) and list it in IMPOSSIBLE"


@pytest.mark.parametrize(
    "words, flag, value",
    [(w, f, v) for w, f, kind in _numeric_options() for v in _impossible(f, kind)],
    ids=lambda x: " ".join(x) if isinstance(x, tuple) else str(x),
)
def test_impossible_numbers_are_usage_errors_before_any_work(words, flag, value, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv, _ = _required_args(command_table()[words].config)
    assert main([*words, *argv, flag, value]) == 2
    err = capsys.readouterr().err
    assert f"{flag} " in err and "must be" in err, err
    assert not list(tmp_path.iterdir()), "nothing may be written"


def test_bounds_hold_in_the_python_api_too():
    from r21d_zoo._errors import UsageError
    from r21d_zoo.infer.config import ExtractConfig
    from r21d_zoo.models import ClipSpec
    from r21d_zoo.train.optim import OptimConfig

    with pytest.raises(UsageError, match="batch_size must be at least 1"):
        ExtractConfig(batch_size=0)
    with pytest.raises(UsageError, match="--resize 0: resize_size"):
        ExtractConfig(clip=dict(resize_size=0))
    with pytest.raises(UsageError, match="epochs must be at least 1"):
        OptimConfig(epochs=0)
    with pytest.raises(ValueError, match="std must be above 0"):  # a weight's own config.json: an input error
        ClipSpec(std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="mean must be a finite number"):
        ClipSpec(mean=(float("nan"), 0.4, 0.4))
    with pytest.raises(UsageError, match="--stride-sec places features along the video; --num-clips"):
        ExtractConfig(num_clips=3, stride_sec=1.0)  # the stride was once ignored without a word


@pytest.mark.parametrize(
    "setting, message",
    [
        ('flip: "no"', "settings.flip 'no' is not true or false"),  # once trained with flips on
        ("optim: {epochs: 1.7}", "settings.optim.epochs 1.7 is not an integer"),  # once ran 2 epochs of "1.7"
        ("optim: {lr: fast}", "settings.optim.lr 'fast' is not a valid value"),
        ("clip: {mean: [.nan, 0.4, 0.4]}", "mean must be a finite number"),
        ("batch_size: [8, 16]", "settings.batch_size takes one value"),
    ],
)
def test_a_config_file_value_gets_the_validation_its_flag_gets(setting, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("c.yaml").write_text("settings:\n  " + setting + "\n")
    assert main(["finetune", "--config", "c.yaml", "--train", "t.csv", "-o", "out"]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]
    good = "settings:\n  flip: false\n  optim: {epochs: 2, lr: 1}\n  clip: {mean: [0.5, 0.5, 0.5]}\n"
    Path("c.yaml").write_text(good)
    assert main(["finetune", "--config", "c.yaml", "--train", "t.csv", "-o", "out"]) == 3  # read; then no t.csv


# --- config files ---------------------------------------------------------------------------------------------------


@pytest.mark.video
def test_a_runs_config_yaml_replays_it_bit_for_bit_and_flags_override_it(tmp_path, capsys):
    import torch
    import yaml
    from safetensors.torch import load_file

    from r21d_zoo.data.synthetic import make_motion_dataset

    train, val = make_motion_dataset(tmp_path / "data", videos_per_class=4, val_per_class=2, num_frames=8, size=32)
    args = ["finetune", "--train", str(train), "--val", str(val), "--model", "r2plus1d_18", "--random-weights"]
    args += ["--model-args", '{"channel_multiplier": 0.125}', "--epochs", "1", "--batch-size", "4", "--workers", "0"]
    args += ["--num-frames", "8", "--resize", "32", "32", "--crop-size", "28", "--num-clips", "1"]
    assert main([*args, "-o", str(tmp_path / "run1")]) == 0
    config = tmp_path / "run1" / "config.yaml"
    resolved = yaml.safe_load(config.read_text())
    assert resolved["settings"]["optim"]["epochs"] == 1 and resolved["settings"]["clip"]["crop_size"] == 28
    assert main(["finetune", "--config", str(config), "-o", str(tmp_path / "run2")]) == 0
    runs = [json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("run1", "run2")]
    strip = [[{k: v for k, v in rec.items() if "per_s" not in k} for rec in run] for run in runs]  # timings differ
    assert strip[0] == strip[1]
    weights = [load_file(str(tmp_path / r / "final" / "model.safetensors")) for r in ("run1", "run2")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert main(["finetune", "--config", str(config), "-o", str(tmp_path / "run3"), "--lr", "0.5"]) == 0
    assert yaml.safe_load((tmp_path / "run3" / "config.yaml").read_text())["settings"]["optim"]["lr"] == 0.5
    capsys.readouterr()
    assert main(["finetune", "--config", str(config), "--lr", "0.5"]) == 3  # into run1: the run resumes only as it was
    assert "optim.lr" in capsys.readouterr().err


def test_a_config_file_with_an_unknown_setting_or_value_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("settings:\n  bogus: 1\n")
    assert main(["finetune", "--config", str(bad)]) == 2
    assert "unknown setting 'settings.bogus'" in capsys.readouterr().err
    bad.write_text("settings:\n  mode: half\n")
    assert main(["finetune", "--config", str(bad)]) == 2
    assert "settings.mode 'half' is not one of ['full', 'fc']" in capsys.readouterr().err
    bad.write_text("train: [unclosed\n")
    assert main(["finetune", "--config", str(bad)]) == 3
    assert "cannot be read as YAML" in capsys.readouterr().err


def _shared_flags() -> Dict[str, Dict[tuple, List[str]]]:
    """Every long flag of every command -> its (help, type, choices, default, action) -> the commands with it."""
    parser = build_parser()
    seen: Dict[str, Dict[tuple, List[str]]] = {}
    for words in command_table():
        sub = parser._subparsers._group_actions[0].choices[words[0]]
        if len(words) > 1:
            sub = sub._subparsers._group_actions[0].choices[words[1]]
        for a in sub._actions:
            if not a.option_strings or a.help == argparse.SUPPRESS:
                continue
            default = "required" if a.required else repr(a.default)
            kind = (a.help, getattr(a.type, "__name__", None), tuple(a.choices or ()), default, type(a).__name__)
            seen.setdefault(max(a.option_strings, key=len), {}).setdefault(kind, []).append(" ".join(words))
    return seen


def test_a_flag_shared_by_commands_has_one_meaning_and_default_or_a_documented_reason():
    """One vocabulary: a flag several commands take means the same (help, type, choices) with the same default in
    each, unless ``_options.SHARED_FLAG_EXCEPTIONS`` (shown on the docs' CLI page) says why; the table lists no flag
    that does not differ."""
    from r21d_zoo._options import SHARED_FLAG_EXCEPTIONS

    seen = _shared_flags()
    shared = {flag for flag, kinds in seen.items() if sum(map(len, kinds.values())) > 1}
    differ = {flag: kinds for flag, kinds in seen.items() if len(kinds) > 1}
    undocumented = [
        f"{flag}: " + "; ".join(f"{cmds}: {k[0]!r} default {k[3]}" for k, cmds in kinds.items())
        for flag, kinds in sorted(differ.items())
        if flag not in SHARED_FLAG_EXCEPTIONS
    ]
    assert not undocumented, "\n".join(undocumented)
    assert sorted(set(SHARED_FLAG_EXCEPTIONS) - set(differ)) == [], "exceptions that no longer differ: remove them"
    assert len(shared) > 60
    assert {"--device", "--decoder", "--workers", "--model-args"} <= shared - set(differ)


def test_the_runtime_defaults_to_auto_in_every_command_that_runs_a_model_for_inference():
    kinds = {kind[3]: set(commands) for kind, commands in _shared_flags()["--runtime"].items()}
    assert kinds == {repr("auto"): {"extract", "predict", "evaluate", "serve"}, repr("eager"): {"demo"}}, kinds


def test_the_device_defaults_to_the_gpu_in_every_command_that_runs_a_model():
    kinds = _shared_flags()["--device"]
    assert len(kinds) == 1 and len(next(iter(kinds.values()))) >= 8, kinds


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "--data", "v.csv", "--flow-weight", "0.3"], "--flow-weight weighs the --flow-model stream"),
        (["predict", "v.mp4", "--flow-weight", "0.3"], "--flow-weight weighs the --flow-model stream"),
        (["extract", "v.mp4", "-o", "f", "--num-clips", "3", "--stride-sec", "1"], "--stride-sec places features"),
    ],
)
def test_options_that_would_be_ignored_are_refused(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err and not list(tmp_path.iterdir())


@pytest.mark.video
def test_a_run_that_fails_after_making_its_output_folder_leaves_none(tmp_path, monkeypatch, capsys):
    """Errors after -o was created once left empty folders behind; a folder that was there before is kept."""
    from util import make_video

    monkeypatch.chdir(tmp_path)
    make_video(tmp_path / "v.mp4", num_frames=4)
    bad_model = ["--model", f"local-dir:{tmp_path / 'no-such-model'}"]
    assert main(["extract", "v.mp4", "-o", "feats", *bad_model]) == 3
    assert main(["explain", "v.mp4", "-o", "cam", *bad_model]) == 3
    assert main(["predict", "v.mp4", "-o", "pred", *bad_model]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    (tmp_path / "kept").mkdir()
    assert main(["extract", "v.mp4", "-o", "kept", *bad_model]) == 3
    assert (tmp_path / "kept").is_dir()
