"""How to share LiteRT interpreters between request threads, measured: ``python -m benchmarks.litert_pool``.

The interpreters are not thread-safe. A pool of 1 is a lock; a pool of 2 lets two requests run at
once, one per core. Each interpreter may also use 1 or 2 threads. Every combination runs
in turn, alternated ``--rounds`` times: the shipped set's three models, one image per call, from
1 and from 8 caller threads. Prints JSON: calls per second and p50 ms per call.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np

CONFIGS = [(1, 1), (1, 2), (2, 1), (2, 2)]       # (pool, threads per interpreter)


def _graphs(checkpoints):
    import keras

    from cvdemo import checkpoints as ckpt

    out = []
    for name, loaded in ckpt.load_all(checkpoints).items():
        model = loaded.model
        out.append((name, keras.Model(model.inputs, [model.output, model.get_layer("embedding").output]),
                    tuple(loaded.input_shape)))
    return out


def _run(models, callers: int, seconds: float) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def caller(seed: int):
        rng = np.random.default_rng(seed)
        mine = []
        while time.perf_counter() < end:
            started = time.perf_counter()
            for model, shape in models:
                model(rng.random((1, *shape), dtype=np.float32))
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"calls_per_s": round(len(latencies) / seconds, 1), "p50_ms": round(1000 * float(np.median(latencies)), 3)}


def main(argv=None) -> int:
    from cvdemo import config
    from cvdemo.litert import LiteRTModel, converted

    parser = argparse.ArgumentParser(prog="python -m benchmarks.litert_pool", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default=str(config.CHECKPOINT_DIR))
    parser.add_argument("--seconds", type=float, default=3.0, help="per combination and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    graphs = [(converted(graph, beside=Path(args.checkpoints) / "litert")[0], len(graph.outputs), shape)
              for _, graph, shape in _graphs(args.checkpoints)]
    results: dict[str, dict[str, list]] = {}
    for _ in range(args.rounds):
        for pool, threads in CONFIGS:
            models = [(LiteRTModel(flat, outputs, pool=pool, threads=threads), shape) for flat, outputs, shape in graphs]
            for callers in (1, 8):
                key = f"pool {pool}, {threads} thread(s), {callers} caller(s)"
                for metric, value in _run(models, callers, args.seconds).items():
                    results.setdefault(key, {}).setdefault(metric, []).append(value)
    print(json.dumps({k: {m: float(np.median(v)) for m, v in r.items()} for k, r in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
