"""Follow a training run: fold its event dicts into a log, curves, a progress fraction and a summary.

Knows the event shapes of :mod:`cvdemo.train` and :mod:`cvdemo.service`, nothing about Keras or
any UI.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

METRICS = ("loss", "accuracy")


@dataclass
class RunProgress:
    """Everything a person watching a run wants to see, rebuilt from events as they arrive."""

    models: tuple[str, ...] = ()
    epochs: int = 1
    lines: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)        # long format: epoch, model, split, metric, value
    results: dict[str, dict] = field(default_factory=dict)  # model -> model_done event
    stage: str = "Starting"
    finished: bool = False
    stopped: bool = False
    error: str | None = None
    set_id: str | None = None
    set_label: str | None = None
    _done_epochs: dict[str, float] = field(default_factory=dict)

    def add(self, event: dict) -> None:
        """Fold one event in."""
        kind = event.get("kind")
        handler = getattr(self, f"_on_{kind}", None)
        if handler:
            handler(event)

    def extend(self, events: list[dict]) -> None:
        for event in events:
            self.add(event)

    # ------------------------------------------------------------------ views
    @property
    def fraction(self) -> float:
        """0..1 over all requested models and epochs (batch-level resolution)."""
        if self.finished and not self.stopped:
            return 1.0
        total = max(1, len(self.models) * self.epochs)
        return min(1.0, sum(self._done_epochs.values()) / total)

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def curves(self, metric: str) -> list[dict]:
        """Rows ``{"epoch", "value", "series"}`` for one metric, e.g. series "scratch val"."""
        rows = [{"epoch": r["epoch"], "value": r["value"], "series": f"{r['model']} {r['split']}"}
                for r in self.rows if r["metric"] == metric]
        # one NaN placeholder per series with no point yet: a chart that fixes its legend on the
        # first data it sees then already knows every series that will appear
        drawn = {r["series"] for r in rows}
        waiting = [f"{m} {split}" for m in self.models for split in ("train", "val")]
        return [{"epoch": 1, "value": math.nan, "series": name} for name in waiting if name not in drawn] + rows

    def summary(self) -> list[dict]:
        """One row per model for the comparison table."""
        return [{"model": name,
                 "val accuracy": round(r["val_accuracy"], 4),
                 "macro F1": round(r["macro_f1"], 4),
                 "training time (s)": round(r["train_seconds"], 1),
                 "parameters": int(r["params"]),
                 "saved": "no (stopped)" if r["stopped"] else "yes"}
                for name, r in self.results.items()]

    # ------------------------------------------------------------------ events
    def _on_data(self, e: dict) -> None:
        if e.get("stage") == "scan":
            counts = ", ".join(f"{k}: {v}" for k, v in e["counts"].items())
            self.lines.append(f"dataset: {len(e['classes'])} classes ({counts}), profile {e['profile']}")
            self.stage = "Loading images"
        else:
            self.lines.append(f"split: {e['n_train']} train / {e['n_val']} validation images")
            self.stage = "Training"

    def _on_load(self, e: dict) -> None:
        self.stage = f"Loading images {e['done']}/{e['total']}"

    def _on_warning(self, e: dict) -> None:
        self.lines.append(f"warning: {e['message']}")

    def _on_start(self, e: dict) -> None:
        self.epochs = max(self.epochs, int(e["epochs"]))
        if e["model"] not in self.models:
            self.models = (*self.models, e["model"])
        where = f", {e['backbone']} from {e['weights']}" if e.get("backbone") else ""
        self.lines.append(f"{e['model']}: training {e['epochs']} epochs, {e['params']:,} parameters{where}")
        self.stage = f"Training {e['model']}"

    def _on_phase(self, e: dict) -> None:
        self.lines.append(f"{e['model']}: {e['message']}")
        self.stage = f"{e['model']}: {e['phase']}"

    def _on_batch(self, e: dict) -> None:
        self._done_epochs[e["model"]] = e["epoch"] - 1 + e["batch"] / max(1, e["steps"])
        self.stage = f"{e['model']} epoch {e['epoch']}/{e['total_epochs']}, batch {e['batch']}/{e['steps']}"

    def _on_epoch(self, e: dict) -> None:
        name, epoch, logs = e["model"], int(e["epoch"]), e["logs"]
        self._done_epochs[name] = float(epoch)
        for metric in METRICS:
            for split, key in (("train", metric), ("val", f"val_{metric}")):
                if key in logs:
                    self.rows.append({"epoch": epoch, "model": name, "split": split, "metric": metric,
                                      "value": float(logs[key])})
        parts = [f"{key} {logs[key]:.3f}" for key in ("loss", "accuracy", "val_loss", "val_accuracy")
                 if key in logs]
        self.lines.append(f"{name} epoch {epoch}/{e['total_epochs']} ({e['phase']}): {', '.join(parts)}"
                          f"  [{e['seconds']:.1f} s]")

    def _on_model_done(self, e: dict) -> None:
        self.results[e["model"]] = e
        if not e["stopped"]:                 # a stopped model keeps the share it reached
            self._done_epochs[e["model"]] = float(self.epochs)
        state = "stopped, not saved" if e["stopped"] else f"saved, val accuracy {e['val_accuracy']:.1%}"
        self.lines.append(f"{e['model']}: {state}")

    def _on_done(self, e: dict) -> None:
        # training is over; "Finished" waits for the saved models to be loaded ("activated")
        self.stopped = bool(e.get("stopped"))
        finished = [name for name, r in self.results.items() if not r.get("stopped")]
        self.stage = ("Stopped" if self.stopped or not finished
                      else "Trained and saved; loading the new models for your session")
        self.lines.append("stopped at your request" if self.stopped else "training finished")

    def _on_activated(self, e: dict) -> None:
        self.set_id, self.set_label = e["set_id"], e["label"]
        self.stage = "Stopped" if self.stopped else "Finished"
        self.lines.append(f"new model set: {e['label']}")

    def _on_error(self, e: dict) -> None:
        self.error = e["message"]
        self.lines.append(f"error: {e['message']}")
