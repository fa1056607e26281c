"""One live run per output folder: a second ``finetune``, ``pretrain`` or ``extract`` into a folder a live run holds
is refused (exit 3) naming the holder; a run killed with ``kill -9`` leaves a lock the next run takes over, and it
resumes."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from r21d_zoo._errors import EXIT_INPUT
import r21d_zoo._io as r21d_zoo_io
from r21d_zoo._io import FolderLock, FolderLockedError
from r21d_zoo.cli import build_parser, config_from_args, main
from r21d_zoo.data.labelled import read_labelled
from r21d_zoo.data.synthetic import make_motion_dataset
from r21d_zoo.jobs.finetune import FinetuneJobConfig, finetune
from util import TINY

LOCK = ".r21d-zoo.lock"


def _holder(folder: Path, name: str = LOCK) -> subprocess.Popen:
    """Another process holding the folder the way a running job does (``FolderLock``), until it is killed. It loads
    only ``r21d_zoo._io`` (a bare package object stands in for ``r21d_zoo``, whose import pulls in torch)."""
    package = Path(r21d_zoo_io.__file__).parent
    code = (
        f"import sys, time, types; p = types.ModuleType('r21d_zoo'); p.__path__ = [{str(package)!r}]; "
        "sys.modules['r21d_zoo'] = p; from r21d_zoo._io import FolderLock; "
        f"FolderLock({str(folder)!r}, {name!r}).acquire(); print('locked', flush=True); time.sleep(300)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _wait_for(condition, what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def test_a_held_folder_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over(tmp_path, caplog):
    first = FolderLock(tmp_path).acquire()
    with pytest.raises(FolderLockedError, match=rf"in use by another run that is still going \(pid {os.getpid()} on"):
        FolderLock(tmp_path).acquire()
    first.release()
    with FolderLock(tmp_path):  # released: free again
        pass
    holder = _holder(tmp_path)
    with pytest.raises(FolderLockedError, match=rf"pid {holder.pid} on \S+ since .*: -c\)"):
        FolderLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    caplog.set_level(logging.INFO, logger="r21d_zoo._io")
    with FolderLock(tmp_path):  # the kernel dropped the dead process's lock; its record names it
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert f"from a process that has ended (pid {holder.pid}" in caplog.text


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion")
    make_motion_dataset(root, videos_per_class=4, val_per_class=1, num_frames=8, size=32)
    return root


MODEL = ["--random-weights", "--model-args", json.dumps(TINY)]
CLIP = ["--num-frames", "8", "--resize", "32", "32", "--crop-size", "28", "--workers", "0"]


@pytest.mark.video
def test_extract_and_pretrain_refuse_a_folder_a_live_run_holds(motion, tmp_path, capsys):
    out = tmp_path / "out"
    holder = _holder(out)
    try:
        extract = ["extract", str(motion), "-o", str(out), "--model", "r2plus1d_18"] + MODEL + CLIP
        assert main(extract) == EXIT_INPUT
        assert f"in use by another run that is still going (pid {holder.pid}" in capsys.readouterr().err
        assert not (out / "manifest.jsonl").exists()
        shards = tmp_path / "shards"
        assert main(["shards", "pack", str(motion / "train.csv"), "-o", str(shards)]) == 0
        pretrain = ["pretrain", str(shards), "-o", str(out), "--model", "r3d_18", "--samples", "4"] + MODEL[1:] + CLIP
        assert main(pretrain + ["--batch-size", "2", "--sampling", "natural"]) == EXIT_INPUT
        assert f"(pid {holder.pid} on" in capsys.readouterr().err
        assert not (out / "last.pt").exists()
        # shards of one extraction are separate runs: shard 1 of 2 is not blocked by the holder of the plain run
        assert main(extract + ["--shard-id", "1", "--num-shards", "2"]) == 0
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.video
def test_finetune_refuses_a_live_run_then_resumes_it_after_kill_9(motion, tmp_path, capsys, caplog):
    out = tmp_path / "run"
    args = ["finetune", "--train", str(motion / "train.csv"), "-o", str(out), "--model", "r2plus1d_18"] + MODEL + CLIP
    args += ["--epochs", "40", "--batch-size", "4"]
    live = subprocess.Popen([sys.executable, "-m", "r21d_zoo"] + args, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (out / LOCK).exists() and f'"pid": {live.pid}' in (out / LOCK).read_text(), "the lock")
        assert main(args) == EXIT_INPUT
        assert f"(pid {live.pid} on" in capsys.readouterr().err
        _wait_for(lambda: (out / "last.pt").exists(), "the first checkpoint")
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()
    done = torch.load(out / "last.pt", weights_only=True)["epoch"]
    assert 1 <= done < 40
    # the same command resumes (one more epoch here, to keep the test short), taking the dead run's lock over
    cfg = config_from_args(FinetuneJobConfig, build_parser().parse_args(args))
    caplog.set_level(logging.INFO)
    result = finetune(read_labelled(cfg.train), None, cfg.settings, out_dir=out, stop_after_epochs=done + 1)
    assert f"resumed from {out / 'last.pt'} at epoch {done}" in caplog.text
    assert [h["epoch"] for h in result.history] == list(range(1, done + 2))
    assert f"from a process that has ended (pid {live.pid}" in caplog.text


def test_a_ctrl_c_during_a_save_finishes_the_save_then_interrupts(tmp_path, monkeypatch):
    """SIGINT in the middle of writing last.pt once exited 3 with torch's "enforce fail ... unexpected pos"."""
    import os
    import signal

    from r21d_zoo._io import atomic_write
    from r21d_zoo.train.run_folder import save_checkpoint

    def write(f):
        f.write(b"first half, ")
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives mid-write
        f.write(b"second half")

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x.bin", write)
    assert (tmp_path / "x.bin").read_bytes() == b"first half, second half"
    state = {"model": {"w": torch.ones(3)}, "epoch": 1}
    tag = torch.serialization.location_tag

    def interrupting_tag(storage):  # called by torch.save for each storage: Ctrl-C inside its serializer
        os.kill(os.getpid(), signal.SIGINT)
        return tag(storage)

    monkeypatch.setattr(torch.serialization, "location_tag", interrupting_tag)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "last.pt", state)
    monkeypatch.undo()
    assert torch.equal(torch.load(tmp_path / "last.pt", weights_only=True)["model"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "x.bin"]
