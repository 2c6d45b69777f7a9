"""Teaching bench, both models side by side.

- A new class: the shipped set taught 3 from 15 drawn examples in five hand styles, then scored
  on 3s from other hands (new random hands of the styles, real MNIST 3s held out of every
  training and pretraining) and on the robustness sets of 0-2.
- A correction: 2s the shipped models misread (drawn in the 2's hand styles, and UCI scans of
  other writers), 10 of them given as 2s (teaching learns 8 and keeps 2 aside for its table),
  the rest kept as their held-out neighbours."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cvdemo import config

TAUGHT = ("scratch", "finetuned")


def _write_threes(folder: Path, per_style: int, seed: int) -> Path:
    from cvdemo.testsets.styles import PENS, STYLES, draw_style

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(per_style * len(STYLES[3])):
        style, pen = STYLES[3][i % len(STYLES[3])], tuple(PENS)[(i // len(STYLES[3])) % len(PENS)]
        draw_style(3, style, rng, pen).save(folder / f"{style}_{pen}_{i:03d}.png")
    return folder


def _accuracy(model, folder: Path, label: int) -> float:
    from cvdemo.images import preprocess

    return _right(model, np.stack([preprocess(p) for p in sorted(folder.iterdir())]), label)


def _robustness(results: dict, workdir: Path) -> dict:
    """The taught models on the robustness sets of 0-2: answering the new class is a mistake."""
    from cvdemo.data import load_arrays, scan_folder
    from cvdemo.evaluate import predict_proba
    from cvdemo.testsets import write_testsets

    found = {}
    for set_name, folder in write_testsets(workdir).items():
        dataset = scan_folder(folder)
        arrays = load_arrays(dataset, "digits")
        refused = len(arrays.skipped) - len(dataset.skipped)
        total = len(arrays.labels) + refused          # refused by the preprocessing: a wrong answer
        found[set_name] = {"n": total}
        for name, r in results.items():
            classes = r.meta["class_names"]
            truth = np.array([classes.index(dataset.class_names[y]) for y in arrays.labels])
            right = int((predict_proba(r.model, arrays.images).argmax(1) == truth).sum())
            found[set_name][name] = round(right / max(1, total), 5)
    return found


CORRECTIONS = 10


def _misread_twos(shipped: dict, workdir: Path, seed: int) -> tuple[list[Path], np.ndarray, dict]:
    """2s that any of the ``shipped`` models (name -> checkpoint) misreads, in a seeded order:
    drawn ones in every hand style and pen of the 2, and the UCI writers' 2s; their files, their
    model inputs, and how many of each source were misread."""
    from cvdemo.evaluate import predict_proba
    from cvdemo.images import preprocess
    from cvdemo.testsets import write_testsets
    from cvdemo.testsets.styles import PENS, STYLES, draw_style

    rng = np.random.default_rng(seed)
    drawn = workdir / "drawn"
    drawn.mkdir(parents=True)
    for i in range(40 * len(STYLES[2])):
        style, pen = STYLES[2][i % len(STYLES[2])], tuple(PENS)[(i // len(STYLES[2])) % len(PENS)]
        draw_style(2, style, rng, pen).save(drawn / f"{style}_{pen}_{i:03d}.png")
    writers = sorted((write_testsets(workdir, ["writers"])["writers"] / "2_digits").iterdir())
    candidates = sorted(drawn.iterdir()) + writers
    images = np.stack([preprocess(p) for p in candidates])
    wrong = np.zeros(len(candidates), bool)
    for checkpoint in shipped.values():
        wrong |= predict_proba(checkpoint.model, images).argmax(1) != checkpoint.class_names.index("2_digits")
    order = rng.permutation(np.flatnonzero(wrong))
    n_drawn = len(candidates) - len(writers)
    return ([candidates[i] for i in order], images[order],
            {"drawn": int(wrong[:n_drawn].sum()), "writers": int(wrong[n_drawn:].sum())})


def _right(model, images: np.ndarray, label: int) -> float:
    from cvdemo.evaluate import predict_proba

    return round(float((predict_proba(model, images).argmax(1) == label).mean()), 4)


def bench_correction(checkpoints: Path, workdir: Path) -> dict:
    """Ten misread 2s taught as 2s: accuracy on them and on the other misread 2s, before and after."""
    import shutil

    from cvdemo import checkpoints as ckpt
    from cvdemo.teaching import teach

    shipped = {name: ckpt.load(Path(checkpoints), name) for name in TAUGHT}
    misread, images, sources = _misread_twos(shipped, workdir / "correction-pool", config.SEED + 53)
    if len(misread) < CORRECTIONS + 5:
        return {"skipped": f"only {len(misread)} misread 2s found"}
    examples = workdir / "correction-examples" / "2_digits"
    examples.mkdir(parents=True)
    for i, path in enumerate(misread[:CORRECTIONS]):
        shutil.copy(path, examples / f"{i:02d}_{path.name}")
    taught_images, neighbours = images[:CORRECTIONS], images[CORRECTIONS:]
    started = time.perf_counter()
    results = teach(Path(checkpoints), examples.parent, None, models=TAUGHT)
    total = time.perf_counter() - started
    models = {}
    for name, r in results.items():
        label, before = r.meta["class_names"].index("2_digits"), shipped[name].model
        # teaching keeps every 5th of 10 examples aside for its before/after table: those are
        # scored as held-out corrections, the rest as the corrections the models were taught
        kept_aside = {int(Path(p).name[:2]) for p in r.meta["taught"]["held_out"]}
        taught = np.array([i not in kept_aside for i in range(CORRECTIONS)])
        models[name] = {"seconds": round(r.seconds, 2), "val_accuracy": r.after["val_accuracy"],
                        "val_accuracy_before": r.before["val_accuracy"],
                        "taught": int(taught.sum()),
                        "corrected_before": _right(before, taught_images[taught], label),
                        "corrected_after": _right(r.model, taught_images[taught], label),
                        "held_out_corrections_before": _right(before, taught_images[~taught], label),
                        "held_out_corrections_after": _right(r.model, taught_images[~taught], label),
                        "neighbours_before": _right(before, neighbours, label),
                        "neighbours_after": _right(r.model, neighbours, label)}
        models[name]["neighbours_gain"] = round(models[name]["neighbours_after"] - models[name]["neighbours_before"], 4)
    return {"corrections": CORRECTIONS, "neighbours": len(neighbours), "misread_by_source": sources,
            "seconds": round(total, 2), "models": models}


def bench_teach(checkpoints: Path, workdir: Path) -> dict:
    from cvdemo.data import mnist_digits, mnist_partition, mnist_to_paper
    from cvdemo.teaching import teach, warm

    examples = workdir / "teach-examples"
    _write_threes(examples / "3", per_style=3, seed=config.SEED + 31)
    other_hands = _write_threes(workdir / "teach-held" / "styles", per_style=12, seed=config.SEED + 97)
    pixels, labels = mnist_digits()
    reserve = mnist_partition()["query"]
    mnist = workdir / "teach-held" / "mnist"
    mnist.mkdir(parents=True)
    for i in reserve[labels[reserve] == 3]:
        mnist_to_paper(pixels[i]).save(mnist / f"mnist_{i}.png")
    out = workdir / "taught"
    started = time.perf_counter()
    warm(Path(checkpoints))               # what the app does at start, so that this is a visitor's first teaching
    warmed = time.perf_counter() - started
    started = time.perf_counter()
    results = teach(Path(checkpoints), examples, out, models=TAUGHT)
    total = time.perf_counter() - started
    new = results[TAUGHT[0]].meta["class_names"].index("3")
    models = {name: {"seconds": round(r.seconds, 2), "val_accuracy": r.after["val_accuracy"],
                     "val_accuracy_before": r.before["val_accuracy"],
                     "examples_accuracy": r.after["examples_accuracy"],
                     "held_out_styles": _accuracy(r.model, other_hands, new),
                     "held_out_mnist": _accuracy(r.model, mnist, new)}
              for name, r in results.items()}
    for m in models.values():
        m["held_out_min"] = min(m["held_out_styles"], m["held_out_mnist"])
    robustness = _robustness(results, workdir / "teach-robustness")
    for name in models:
        models[name]["robustness_min"] = min(s[name] for s in robustness.values())
    return {"examples": 15, "seconds": round(total, 2), "warm_seconds": round(warmed, 2), "models": models, "robustness": robustness,
            "held_out_n": {"styles": len(list(other_hands.iterdir())), "mnist": len(list(mnist.iterdir()))}}
