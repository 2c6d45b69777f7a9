"""RunProgress: what a person watching a training run sees, folded from the run's events."""
from __future__ import annotations

from cvdemo.progress import RunProgress


def _epoch(model, epoch, total=2):
    return {"kind": "epoch", "model": model, "phase": "train", "epoch": epoch, "total_epochs": total,
            "seconds": 1.0 * epoch, "logs": {"loss": 1.0 / epoch, "accuracy": 0.5, "val_loss": 1.0,
                                             "val_accuracy": 0.5}}


def _model_done(model, stopped=False):
    return {"kind": "model_done", "model": model, "stopped": stopped, "val_accuracy": 0.5}


def test_finished_only_once_the_trained_models_are_loaded():
    progress = RunProgress(models=("scratch",), epochs=2)
    progress.extend([_epoch("scratch", 1), _epoch("scratch", 2), _model_done("scratch")])
    assert progress.fraction == 1.0 and "scratch epoch 2/2" in progress.log
    progress.add({"kind": "done", "stopped": False})
    assert "loading the new models" in progress.stage and "Finished" not in progress.stage
    progress.add({"kind": "activated", "set_id": "run-1", "label": "Trained 12:00:00"})
    assert progress.stage == "Finished" and progress.set_id == "run-1"


def test_a_run_stopped_before_any_model_finished_says_stopped():
    progress = RunProgress(models=("scratch", "finetuned"), epochs=2)
    progress.extend([_epoch("scratch", 1), _model_done("scratch", stopped=True), {"kind": "done", "stopped": True}])
    assert progress.stage == "Stopped" and progress.stopped
    assert "stopped at your request" in progress.log



def test_a_stopped_run_keeps_the_share_it_reached():
    """The bar of a run stopped halfway reads about 25%, not "100% · Stopped"."""
    progress = RunProgress(models=("scratch", "finetuned"), epochs=2)
    progress.extend([_epoch("scratch", 1), _model_done("scratch", stopped=True), {"kind": "done", "stopped": True}])
    progress.finished = True
    assert 0.2 <= progress.fraction <= 0.3
