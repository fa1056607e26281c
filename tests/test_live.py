"""``predict --live``: streams this test serves on 127.0.0.1 (MPEG-TS over TCP) and pipes to standard input, paced at
real time or faster, cut off and restarted, classified by the model fine-tuned on the motion task."""

import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from r21d_zoo.cli import main as cli_main
from r21d_zoo.data.synthetic import motion_clip
from r21d_zoo.video.writer import stream_video

pytestmark = pytest.mark.video

FPS = 10  # 8 frames a window: windows of 0.8 s


def pieces(directions, seed=100):
    """0.8-s pieces of the motion task, one per direction, at 10 fps."""
    rng = np.random.default_rng(seed)
    return np.concatenate([motion_clip(d, 8, 32, rng) for d in directions])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stream_when_started(started, url: str, frames: np.ndarray, pace: float) -> None:
    started.set()
    stream_video(url, frames, FPS, pace)


def serve(port: int, frames: np.ndarray, pace: float = 1.0) -> multiprocessing.Process:
    """A process that listens on ``port`` and streams ``frames`` to the first client (PyAV holds the GIL while FFmpeg
    waits for one, so not a thread). Spawned, not forked: a fork of this many-threaded test process can inherit a
    lock another thread held and never start listening."""
    context = multiprocessing.get_context("spawn")
    started = context.Event()
    server = context.Process(target=_stream_when_started, args=(started, f"tcp://127.0.0.1:{port}?listen=1", frames,
                                                               pace), daemon=True)  # fmt: skip
    server.start()
    assert started.wait(60), "the stream server did not start"
    time.sleep(0.3)  # listening
    return server


def read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def srt_cues(text: str) -> list:
    """(start, end, [labels]) per cue; fails on a malformed block."""
    cues = []
    for block in text.strip().split("\n\n") if text.strip() else []:
        lines = block.splitlines()
        assert lines[0] == str(len(cues) + 1), block
        start, end = re.fullmatch(r"(\S+) --> (\S+)", lines[1]).groups()
        seconds = [sum(float(x) * m for x, m in zip(s.replace(",", ".").split(":"), (3600, 60, 1)))
                   for s in (start, end)]
        cues.append((*seconds, [re.fullmatch(r"(.+) \(([\d.]+)\)", line).group(1) for line in lines[2:]]))
    return cues


def assert_outputs_agree(out: Path) -> list:
    """live.jsonl, .srt and .vtt hold the same windows, each file whole; returns the windows."""
    windows = read_jsonl(out / "live.jsonl")
    cues = srt_cues((out / "live.srt").read_text())
    assert [c[2] for c in cues] == [[p["label"] for p in w["predictions"]] for w in windows]
    for (start, end, _), w in zip(cues, windows):
        assert start <= (w["start"] + w["end"]) / 2 <= end
    vtt = (out / "live.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n") and vtt.count(" --> ") == len(cues)
    return windows


def assert_switches(windows: list, at: float):
    """The top label is left before ``at`` s and right after it, give or take one window."""
    top = [(w["start"], w["predictions"][0]["label"]) for w in windows]
    assert all(label == "left" for start, label in top if start + 0.8 <= at - 0.8), top
    assert all(label == "right" for start, label in top if start >= at + 0.8), top
    assert {"left", "right"} <= {label for _, label in top}, top


def test_a_tcp_stream_switches_label_within_a_window_of_the_change(motion_model, tmp_path, capsys):
    port = free_port()
    server = serve(port, pieces(["left"] * 3 + ["right"] * 3))  # right from 2.4 s
    out = tmp_path / "out"
    args = ["predict", "--live", f"tcp://127.0.0.1:{port}", "--model", f"local-dir:{motion_model}", "-o", str(out),
            "--reconnect", "0", "--plot", "--outputs", "srt,vtt"]  # fmt: skip
    assert cli_main(args) == 0  # the plot is drawn from live.jsonl: written for it though --outputs leaves json out
    server.join(10)
    printed = capsys.readouterr().out
    windows = assert_outputs_agree(out)
    assert [w["start"] for w in windows] == pytest.approx([0.8 * w["index"] for w in windows])  # the file timeline's
    assert_switches(windows, 2.4)
    assert len(windows) + sum(w["skipped"] for w in windows) == 6  # every window classified or counted as skipped
    assert all(0 <= w["latency"] < 60 and w["model_seconds"] > 0 for w in windows)
    assert "ended: end of stream" in printed and f"{len(windows)} windows" in printed
    assert (out / "live.png").stat().st_size > 0


def _live_subprocess(model: Path, out: Path, *extra: str) -> subprocess.Popen:
    """``predict --live -`` in a process of its own, its standard input a pipe to write a stream into (stderr in
    ``out.log``)."""
    cmd = [sys.executable, "-m", "r21d_zoo", "predict", "--live", "-", "--model", f"local-dir:{model}", "-o", str(out),
           *extra]  # fmt: skip
    log = open(f"{out}.log", "wb")
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)


def test_a_pipe_on_standard_input_switches_label_too(motion_model, tmp_path):
    """...and ``kill -USR1`` redraws the plot while the stream goes on."""
    proc = _live_subprocess(motion_model, tmp_path / "out", "--plot")
    feeder = threading.Thread(target=lambda: (stream_video(proc.stdin, pieces(["right"] * 3 + ["left"] * 3)),
                                              proc.stdin.close()))  # fmt: skip
    feeder.start()
    stdout = proc.stdout.readline() + proc.stdout.readline()  # two windows
    proc.send_signal(signal.SIGUSR1)
    plot = tmp_path / "out" / "live.png"
    while not plot.exists() and proc.poll() is None:
        time.sleep(0.05)
    assert plot.exists() and proc.poll() is None  # drawn on request, before the end
    stdout += proc.stdout.read()
    feeder.join()
    assert proc.wait(30) == 0, Path(f"{tmp_path / 'out'}.log").read_text()[-2000:]
    windows = assert_outputs_agree(tmp_path / "out")
    top = [w["predictions"][0]["label"] for w in windows]
    assert top[0] == "right" and top[-1] == "left", top
    assert all(a == "right" for a, w in zip(top, windows) if w["end"] <= 1.6), top
    assert b"ended: end of stream" in stdout


def test_a_source_faster_than_inference_skips_windows_and_an_abrupt_stop_leaves_valid_files(motion_model, tmp_path):
    """Fifty times real time, a window every 0.1 s of stream (500 a second): windows are skipped, not queued, so
    latency stays near one inference; SIGKILL after some windows, the stream still going, leaves every file whole."""
    out = tmp_path / "out"
    proc = _live_subprocess(motion_model, out, "--stride-sec", "0.1")
    stop = threading.Event()

    def frames():  # a stream that goes on until the kill, however slowly this machine answers
        block = pieces(["left", "right"] * 5)
        while not stop.is_set():
            yield from block

    feeder = threading.Thread(target=stream_video, args=(proc.stdin, frames(), FPS, 50.0), daemon=True)
    feeder.start()
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if len(lines) == 12:
            break
    assert proc.poll() is None, b"".join(lines).decode()  # still running: the stop is abrupt
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    stop.set()
    feeder.join(30)  # the pipe broke with the kill: the feeder has returned
    windows = assert_outputs_agree(out)  # each file valid after the kill
    assert len(windows) >= 12
    assert sum(w["skipped"] for w in windows) > 0  # inference is slower than 500 windows a second
    slowest = max(w["model_seconds"] for w in windows)
    assert max(w["latency"] for w in windows[1:]) <= 2 * slowest + 1.0, windows  # no queue builds up
    indexes = [w["index"] for w in windows]
    assert indexes == sorted(set(indexes))
    assert all(b - a - 1 == w["skipped"] for a, b, w in zip(indexes, indexes[1:], windows[1:]))


def test_a_dropped_stream_is_reopened_a_bounded_number_of_times(motion_model, tmp_path, capsys):
    """The server streams 2.4 s, goes, comes back for 1.6 s more, then goes for good: the run reconnects, its time
    runs on, and after three failed attempts it ends with exit 1 and the timeline so far."""
    port = free_port()
    out = tmp_path / "out"
    first = serve(port, pieces(["left"] * 3))

    def come_back():  # FFmpeg's listener closes its socket once a client is in: the next can listen there at once
        jsonl, deadline = out / "live.jsonl", time.monotonic() + 60
        while not (jsonl.is_file() and jsonl.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.05)  # the first stream's first window is written: it is connected
        serve(port, pieces(["right"] * 2)).join(30)

    second = threading.Thread(target=come_back)
    second.start()
    args = ["predict", "--live", f"tcp://127.0.0.1:{port}", "--model", f"local-dir:{motion_model}", "-o", str(out),
            "--reconnect", "3"]  # fmt: skip
    started = time.monotonic()
    assert cli_main(args) == 1
    second.join()
    first.join(30)
    windows = assert_outputs_agree(out)
    starts = [w["start"] for w in windows]
    assert starts == sorted(starts) and starts[-1] >= 2.4  # windows after the reconnection, later in stream time
    assert {w["predictions"][0]["label"] for w in windows} == {"left", "right"}
    printed = capsys.readouterr().out
    assert re.search(r"([4-9]) reconnect attempt", printed), printed  # 1 that worked, 3 more that did not
    assert time.monotonic() - started < 60


def test_ctrl_c_on_an_endless_source_closes_the_files_and_says_how_it_went(motion_model, tmp_path):
    """FFmpeg's own test pattern (an input device with no end, no camera needed), stopped by SIGINT."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "r21d_zoo", "predict", "--live", "lavfi:testsrc=size=64x64:rate=10", "--model",
           f"local-dir:{motion_model}", "-o", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = [proc.stdout.readline() for _ in range(3)]
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read().decode()
    assert proc.wait(30) == 130, rest
    assert "ended: interrupted (Ctrl-C)" in rest and all(line.startswith(b"[") for line in first)
    assert len(assert_outputs_agree(out)) >= 3


@pytest.mark.skipif(os.path.exists("/dev/video0"), reason="this machine has a camera")
def test_a_missing_camera_is_named_not_a_traceback(capsys):
    assert cli_main(["predict", "--live", "/dev/video0", "--random-weights"]) == 3
    err = capsys.readouterr().err
    assert "/dev/video0" in err and "no such camera" in err and "Traceback" not in err


def test_live_refuses_what_needs_the_whole_video(tmp_path, capsys):
    assert cli_main(["predict", "--live", "-", "clip.mp4", "--random-weights"]) == 2
    assert "video inputs" in capsys.readouterr().err
    assert cli_main(["predict", "--live", "-", "--smooth", "3", "--random-weights"]) == 2
    assert cli_main(["predict", "--live", "ftp://example/x", "--random-weights"]) == 3
    assert "not a live source" in capsys.readouterr().err


def test_the_runner_is_warmed_before_the_stream_opens(motion_model, monkeypatch):
    """An optimised runtime traces on its first call (seconds): the classifier makes that call on black clips of the
    window's shape when it is made, before any frame arrives, not on the first window."""
    import r21d_zoo
    from r21d_zoo.infer.features import FeatureRunner
    from r21d_zoo.infer.live import LiveClassifier
    from r21d_zoo.infer.timeline import PredictConfig

    shapes = []
    original = FeatureRunner.logits
    monkeypatch.setattr(FeatureRunner, "logits", lambda self, frames: shapes.append(tuple(frames.shape)) or
                        original(self, frames))  # fmt: skip
    model = r21d_zoo.create_model(f"local-dir:{motion_model}")
    classifier = LiveClassifier(model, PredictConfig())
    spec = classifier.spec
    assert shapes == [(1, spec.num_frames, *spec.resize_size, 3)]
