"""`train --logdir` writes TensorBoard event files for train and validation."""
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_train_logdir_writes_tensorboard_events(tiny_dataset, tmp_path):
    logdir = tmp_path / "tb"
    done = subprocess.run([sys.executable, "-m", "cvdemo", "train", "--data", str(tiny_dataset), "--model", "scratch",
                           "--epochs", "1", "--out", str(tmp_path / "ckpt"), "--logdir", str(logdir), "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    events = sorted(p.relative_to(logdir).parts[:3] for p in logdir.rglob("events.out.tfevents.*"))
    assert ("scratch", "train", "train") in events and ("scratch", "train", "validation") in events
