"""The benchmark document as Markdown (the tables of BENCHMARKS.md)."""
from __future__ import annotations

from cvdemo import config
from cvdemo.config import class_display_name

from .options import MODELS
from .retrieval import SYNTHETIC_CLUSTER


def _warmed(teach: dict) -> str:
    return f" of {teach['warm_seconds']:.1f} s" if "warm_seconds" in teach else ""


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _spread(entry: dict | None, key_lo="min", key_hi="max", digits=1) -> str:
    if not entry or entry.get(key_lo) is None:
        return ""
    return f"{_fmt(entry[key_lo], digits)}–{_fmt(entry[key_hi], digits)}"


def _status(document: dict, name: str) -> str:
    for row in document.get("targets", []):
        if row["name"] == name:
            mark = {"pass": "✅ pass", "miss": "❌ miss"}.get(row["status"], row["status"])
            return f"{row['target']} {mark}"
    return ""


def markdown(document: dict) -> str:
    """The benchmark as Markdown: the machine, then one table of figures with targets."""
    lines = _header(document) + ["| Figure | Median | Min–max | Target |", "|---|---:|---:|---|"]
    lines += _training_rows(document) + _robustness_rows(document) + _novelty_rows(document)
    lines += _classify_rows(document)
    lines += _retrieval_rows(document) + _scaling_rows(document)
    if document.get("errors"):
        lines += ["", "## Sections that failed", ""]
        lines += [f"- {section}: {message}" for section, message in document["errors"].items()]
    misses = [row["name"] for row in document.get("targets", []) if row["status"] == "miss"]
    lines += ["", f"Targets: {sum(row['status'] == 'pass' for row in document.get('targets', []))} pass, "
              f"{len(misses)} miss" + (f" ({', '.join(misses)})" if misses else "") + "."]
    return "\n".join(lines) + "\n"


def _header(document: dict) -> list[str]:
    """Where and how the figures were measured."""
    m = document["machine"]
    v = m.get("versions", {})
    lines = ["# cvdemo benchmark", "",
             f"Measured {m['date']} with `python -m cvdemo bench{' --quick' if document.get('quick') else ''}`"
             f" on {m['cpu']}, {m['usable_cores']} usable cores of {m['cores']}, {m['ram_gb']} GB RAM, "
             f"{m['platform']}; Python {v.get('python')}, TensorFlow {v.get('tensorflow-cpu') or v.get('tensorflow')}, "
             f"Keras {v.get('keras')}, Gradio {v.get('gradio')}, FAISS {v.get('faiss-cpu', 'not installed')}. "
             f"Load average {m.get('load_average')} at the start, {m.get('load_average_end')} at the end "
             "(a load above the core count means other work shared the CPU and the timings are pessimistic). "
             f"Models from `{document['options']['checkpoints']}`.", ""]
    if document.get("quick"):
        lines += ["**Quick run** (`--quick`): fewer repeats, "
                  f"{document['options']['epochs']} epochs on at most "
                  f"{document['options']['max_images_per_class']} images per class, small synthetic databases. "
                  "Training figures are not comparable with the 10-epoch targets.", ""]
    return lines


def _training_rows(document: dict) -> list[str]:
    """Training time and validation accuracy per model."""
    lines: list[str] = []
    train = document.get("train", {})
    data = train.get("_data", {})
    for name in MODELS:
        entry = train.get(name)
        if not entry:
            continue
        if "error" in entry:
            lines.append(f"| Train {name} | error: {entry['error']} | | |")
            continue
        title = {"lenet": "LeNet", "scratch": "scratch", "finetuned": "fine-tuned"}[name]
        lines.append(f"| Train {title}, {entry['epochs']} epochs ({data.get('n_train')} train images), s "
                     f"| {_fmt(entry['seconds'])} | {_fmt(entry['min_s'])}–{_fmt(entry['max_s'])} "
                     f"| {_status(document, f'{title}: 10 epochs')} |")
        lines.append(f"| {title} validation accuracy ({data.get('n_val')} images) | {entry['val_accuracy']:.2%} "
                     f"| ≥ {entry['val_accuracy_min']:.2%} | {_status(document, f'{title}: val accuracy')} "
                     f"{_status(document, f'{title} beats LeNet')} |")
    return lines


def _robustness_rows(document: dict) -> list[str]:
    """The shipped models' accuracy on the out-of-distribution sets."""
    lines: list[str] = []
    for set_name, scores in document.get("robustness", {}).items():
        refused = f", {scores['refused']} refused as blank" if scores.get("refused") else ""
        for model in config.MODEL_ORDER:
            if model in scores:
                lines.append(f"| Shipped {model} on unseen {set_name} ({scores['n']} images{refused}) | "
                             f"{scores[model]:.2%} | | {_status(document, f'shipped {model} on {set_name}')} |")
        if _status(document, f"best model on {set_name}"):
            lines.append(f"| … the best model on {set_name} | {scores['best']:.2%} | | "
                         f"{_status(document, f'best model on {set_name}')} |")
    pre = document.get("preprocess_ms")
    if pre:
        lines.append(_latency_row(document, f"Preprocess a 12 MP phone JPEG of paper ({pre['phone_12mp_bytes'] / 1e6:.1f} MB)",
                                  pre["phone_12mp"], "preprocess a 12 MP phone photo p50", digits=1))
        lines.append(_latency_row(document, "… a 280-px sketch, same run", pre["sketch"], "", digits=2))
        lines.append(_latency_row(document, "… a 100-px scan, same run", pre["scan_100px"], "", digits=2))
    return lines


def _novelty_rows(document: dict) -> list[str]:
    """Novelty ("not one of 0, 1, 2"): AUROC per model and method, rejection rates, looks_like, the probe."""
    found = document.get("novelty")
    if not found:
        return []
    lines: list[str] = []
    for model, entry in found["models"].items():
        methods = ", ".join(f"{method} {value:.3f}" for method, value in entry["auroc"].items())
        lines.append(f"| Novelty AUROC, held-out 3-9 vs 0-2, {model} ({methods}) | {entry['auroc']['knn']:.3f} | | "
                     f"{_status(document, 'novelty AUROC, 3-9 vs 0-2 (best model)') if model == found['best']['model'] else ''} |")
    verdict = found["set"]
    auroc_target = _status(document, "novelty AUROC, 3-9 vs 0-2 (the app's verdict)")
    lines.append(f"| … the app's verdict ({' + '.join(verdict['models'])} combined) | {verdict['auroc']:.3f} | | "
                 f"{auroc_target} |")
    for name, share in verdict["rejected"].items():
        known = name in ("validation", "writers", "fonts", "canvas", "styles", "paper", "paper_table", "database")
        title = f"genuine 0-2 rejected, {name}" if known else f"{name} rejected"
        per_model = ", ".join(f"{m} {e['rejected'].get(name, 0):.0%}" for m, e in found["models"].items())
        target = _status(document, f"{title} (the app's verdict)")
        lines.append(f"| {title} ({found['n'].get(name, '')} images; {per_model}) | {share:.1%} | | {target} |")
    digits_target = _status(document, "3-9 rejected (the app's verdict)")
    lines.append(f"| 3-9 rejected, all sources | {verdict['rejected_3_9']:.1%} | | {digits_target} |")
    looks = found["looks_like"]
    if looks.get("right") is not None:
        lines.append(f"| looks_like right on rejected 3-9 ({looks['n']}) | {looks['right']:.1%} | | "
                     f"{_status(document, 'looks_like right on rejected 3-9')} |")
    lines.append(_latency_row(document, "Robustness probe, 2 models x 4 transforms x 25 steps", found["probe_ms"],
                              "probe: 2 models x 4 transforms x 25 steps p50"))
    return lines


def _latency_row(document: dict, title: str, entry: dict, target: str, digits: int = 1) -> str:
    """A row of p50 / p95 milliseconds, their spread and the target's status."""
    return (f"| {title}, p50 / p95 ms | {_fmt(entry['p50'], digits)} / {_fmt(entry['p95'], digits)} | "
            f"{_spread(entry, digits=digits)} | {_status(document, target)} |")


def _classify_rows(document: dict) -> list[str]:
    """Classification latency in process, over HTTP and under concurrent clients; cold start, memory."""
    lines: list[str] = []
    c = document.get("classify_ms", {})
    if "in_process" in c:
        e = c["in_process"]
        runtimes = ", ".join(f"{n} on {r}" for n, r in e.get("runtime", {}).items())
        lines.append(_latency_row(document, f"Classify one sketch in process ({runtimes or ' + '.join(e['models'])})",
                                  e, "classify in process p50, every model on LiteRT"))
        if "keras" in e:
            lines.append(_latency_row(document, f"… the same service on the compiled Keras function, alternated "
                                      f"(LiteRT {e['keras_ratio']}× faster)", e["keras"], ""))
    if "http" in c:
        lines.append(_latency_row(document, "Classify over HTTP (gradio_client, /classify)", c["http"],
                                  "classify over HTTP p50"))
    if "concurrent8" in c:
        e = c["concurrent8"]
        lines.append(f"| {e['clients']} concurrent clients, p50 / p95 ms, errors, throughput | "
                     f"{_fmt(e['p50'])} / {_fmt(e['p95'])}, {e['errors']} errors, {_fmt(e['throughput_rps'])} req/s "
                     f"| {_spread(e)} | {_status(document, '8 concurrent clients p95')} "
                     f"{_status(document, '8 concurrent clients errors')} |")
    b = document.get("browser")
    if b:
        lines.append(_latency_row(document, "In Chromium: end of a stroke → the verdict on screen", b["stroke_ms"],
                                  "stroke to answer on screen, Chromium p50", digits=0))
        lines.append(_latency_row(document, "… an upload → the verdict on screen, same run", b["upload_ms"], "",
                                  digits=0))
        lines.append(f"| Phone 390×844: the verdict and each model's answer in view after a stroke | "
                     f"{b['phone_verdict_in_view']:.0%} | | "
                     f"{_status(document, 'phone: verdict in view after a stroke')} |")
    lines += _classroom_rows(document)
    u = document.get("upkeep")
    if u:
        lines.append(f"| {u['uploads']:,} distinct uploads then {u['runs']} training runs ({u['seconds']:.0f} s): disk peak / "
                     f"end MB under CVDEMO_CACHE_MB={u['cache_mb_bound']}; runs/ peak / end under CVDEMO_MAX_RUNS="
                     f"{u['max_runs_bound']}; memory MB: warm → after the uploads → after each run | "
                     f"{_fmt(u['disk_mb_peak'])} / {_fmt(u['disk_mb_end'])}; {u['runs_peak']} / {u['runs_end']}; "
                     f"{_fmt(u['rss_mb_warm'], 0)} → {_fmt(u['rss_mb_after_uploads'], 0)} → "
                     f"{', '.join(_fmt(r, 0) for r in u['rss_mb_after_each_run'])} | {u['errors']} errors | "
                     f"{_status(document, 'uploads then runs: disk peak within CVDEMO_CACHE_MB')} "
                     f"{_status(document, 'uploads then runs: runs/ peak within CVDEMO_MAX_RUNS')} "
                     f"{_status(document, 'uploads: memory growth after warm-up')} "
                     f"{_status(document, 'runs: memory growth once the kept model sets are loaded')} |")
    t = document.get("teach")
    if t:

        for name, m in t["models"].items():
            lines.append(f"| Taught a new class 3 from {t['examples']} drawn examples ({t['seconds']:.1f} s for both, "
                         f"after the app's start-up warming{_warmed(t)}): {name} "
                         f"({m['seconds']:.1f} s): held-out 3s of other hands / MNIST ({t['held_out_n']['styles']} / "
                         f"{t['held_out_n']['mnist']}); val 0/1/2 before → after; worst robustness set | "
                         f"{m['held_out_styles']:.1%} / {m['held_out_mnist']:.1%}; {m['val_accuracy_before']:.1%} → "
                         f"{m['val_accuracy']:.1%}; {m['robustness_min']:.1%} | | "
                         f"{_status(document, f'taught {name}: held-out 3s (worst of other hands, MNIST)')} "
                         f"{_status(document, f'taught {name}: val accuracy on 0/1/2')} "
                         f"{_status(document, f'taught {name}: worst robustness set')} |")
        c = t.get("correction") or {}
        for name, m in c.get("models", {}).items():
            lines.append(f"| Corrected {c['corrections']} misread 2s ({c['seconds']:.1f} s for both, the server's second "
                         f"teaching): {name}: the {m.get('taught', c['corrections'])} taught / the ones kept aside / their "
                         f"{c['neighbours']} misread neighbours, before → after; "
                         f"val 0/1/2 after | {m['corrected_before']:.0%} → {m['corrected_after']:.0%} / "
                         f"{m.get('held_out_corrections_before', 0):.0%} → {m.get('held_out_corrections_after', 0):.0%} / "
                         f"{m['neighbours_before']:.0%} → {m['neighbours_after']:.0%}; {m['val_accuracy']:.2%} | | "
                         f"{_status(document, f'corrected {name}: the given misread 2s it was taught')} "
                         f"{_status(document, f'corrected {name}: their misread neighbours gain')} "
                         f"{_status(document, f'corrected {name}: val accuracy on 0/1/2')} |")
    if document.get("cold_start"):
        e = document["cold_start"]
        lines.append(f"| Cold start `python app.py` → first /classify answer, s | {_fmt(e['p50'])} | "
                     f"{_spread(e)} | {_status(document, 'cold start')} |")
    if document.get("rss_mb") is not None:
        lines.append(f"| App peak memory (VmHWM), MB | {_fmt(document['rss_mb'], 0)} | | "
                     f"{_status(document, 'app peak memory')} |")
    return lines


def _classroom_rows(document: dict) -> list[str]:
    """The REST API, gradio_client and the classroom scenario, each Gradio figure beside the no-op's."""
    k = document.get("classroom")
    if not k:
        return []
    rest = k["rest"]
    lines = [_latency_row(document, "REST `/api/v1/classify`, one client", rest["one_client"],
                          "REST /api/v1/classify, one client p50"),
             f"| REST, {rest['clients']} clients for {rest['wall_s']:.0f} s: req/s, p50 / p95 ms, errors, mixed-up | "
             f"{_fmt(rest['throughput_rps'])}, {_fmt(rest['p50'])} / {_fmt(rest['p95'])}, {rest['errors']}, "
             f"{rest['mixed_up']} | | {_status(document, 'REST, 30 clients: throughput')} "
             f"{_status(document, 'REST, 30 clients: p95')} {_status(document, 'REST under load: mixed-up answers')} |"]
    for key, what, names in (("gradio", "gradio_client `/classify`", ("gradio_client /classify, 30 clients: "
                                                                      "throughput vs no-op", "gradio_client /classify,"
                                                                      " 30 clients: p95 vs no-op")),
                             ("classroom", "Classroom scenario (`/classify_drawing_live`)",
                              ("classroom scenario, 30 students: p95", "classroom scenario: errors"))):
        pair = k[key]
        app, noop = pair["app"], pair["noop"]
        lines.append(f"| {what}, {app['clients']} clients: req/s, p50 / p95 ms, errors — app vs no-op Gradio app | "
                     f"{_fmt(app['throughput_rps'])}, {_fmt(app['p50'], 0)} / {_fmt(app['p95'], 0)}, {app['errors']}"
                     f" vs {_fmt(noop['throughput_rps'])}, {_fmt(noop['p50'], 0)} / {_fmt(noop['p95'], 0)}, "
                     f"{noop['errors']} | {_fmt(pair['throughput_ratio'])}× | "
                     f"{' '.join(_status(document, n) for n in names)} |")
    if k.get("rss_growth_mb") is not None:
        lines.append(f"| App memory (VmRSS) after the REST load → after everything, MB | {_fmt(k['rss_mb_warm'], 0)} → "
                     f"{_fmt(k['rss_mb_end'], 0)} ({k['rss_growth_mb']:+.0f}) | | |")
    return lines


def _retrieval_rows(document: dict) -> list[str]:
    """Indexing, query time, the naive way and precision@4."""
    lines: list[str] = []
    r = document.get("retrieval", {})
    if not r:
        return lines
    q = r["query_ms"]
    lines.append(f"| Indexing the shipped database ({r['database_size']} images, {r['extractor']}), img/s | "
                 f"{_fmt(r['index_images_per_s'])} | {_fmt(r['index_images_per_s_min'])}–"
                 f"{_fmt(r['index_images_per_s_max'])} | {_status(document, 'indexing rate')} |")
    lines.append(f"| Re-index with nothing changed, s | {_fmt(r['reindex_unchanged_s'], 3)} | | "
                 f"{_status(document, 're-index, nothing changed')} |")
    lines.append(_latency_row(document, "Retrieval query, shipped DB, end to end", q["shipped"],
                              "retrieval query p50 (shipped DB)", digits=2))
    s = q["shipped_search_only"]
    lines.append(f"| … of which the search, p50 ms | {_fmt(s['p50'], 3)} | {_spread(s, digits=3)} | |")
    n = r["naive_query_ms"]
    lines.append(f"| Naive query (re-extract the whole DB), ms; speed-up | {_fmt(n['p50'], 0)}; "
                 f"{_fmt(r['naive_ratio'])}× | {_spread(n, digits=0)} | {_status(document, 'retrieval vs naive')} |")
    m = r.get("milvus_parity") or {}
    if "same_fraction" in m:
        lines.append(f"| Milvus Lite ({m['index_type']}) gives numpy's top 4, in order: queries of query_images/ "
                     f"and held-out | {m['same_top4']} of {m['n_queries']} | query p50 {_fmt(m['query_ms']['p50'], 1)} ms"
                     f" | {_status(document, 'Milvus top-4 equals numpy (shipped DB)')} |")
    elif m.get("skipped"):
        lines.append(f"| Milvus parity on the shipped database | skipped: {m['skipped']} | | |")
    if r.get("precision_at_4"):
        p = r["precision_at_4"]
        lines.append(f"| Retrieval precision@4 ({p['n_queries']} held-out queries), overall / worst class | "
                     f"{p['overall']:.3f} / {p['min_class']:.3f} | | "
                     f"{_status(document, 'retrieval precision@4 (worst class)')} |")
        if p.get("query_images"):
            shipped = p["query_images"]
            lines.append(f"| … on the shipped query_images/ ({shipped['n_queries']} queries, drawn ones "
                         f"included), overall / worst class | {shipped['overall']:.3f} / "
                         f"{shipped['min_class']:.3f} | | |")
        for name, what in (("writers", "other writers (UCI scans)"), ("fonts", "typed fonts"),
                           ("styles", "handwriting styles (0-2)"), ("paper", "phone photos of the sheet"),
                           ("paper_table", "phone photos of the sheet on a table")):
            if p.get(name):
                other = p[name]
                lines.append(f"| … queries from {what}, {other['n_queries']}, overall / worst class | "
                             f"{other['overall']:.3f} / {other['min_class']:.3f} "
                             f"({class_display_name(other['worst_class'])}) | | |")
    return lines


def _scaling_rows(document: dict) -> list[str]:
    """The synthetic-database scaling table of retrieval search."""
    r = document.get("retrieval", {})
    if not r:
        return []
    q = r["query_ms"]
    lines: list[str] = []
    lines += ["", "## Retrieval scaling (search only, one query, k = 4, "
              f"{r['dim']}-d vectors; synthetic databases: Gaussian clusters of {SYNTHETIC_CLUSTER})", "",
              "| Database | Backend | p50 ms | p95 ms | Build s | Recall@4 |", "|---:|---|---:|---:|---:|---:|"]
    rows = [(v2["vectors"], v2.get("backend", "numpy exact") if k != "shipped_search_only"
             else "numpy exact (shipped)", v2) for k, v2 in q.items() if k != "shipped" and "vectors" in v2]
    for vectors, backend, e in sorted(rows, key=lambda row: (row[1], row[0])):
        lines.append(f"| {vectors:,} | {backend} | {_fmt(e['p50'], 3)} | {_fmt(e['p95'], 3)} | "
                     f"{_fmt(e.get('build_s'))} | {_fmt(e.get('recall_at_4'), 3)} |")
    for k, e in q.items():
        if "skipped" in e:
            lines.append(f"| {k} | skipped: {e['skipped']} | | | | |")
    return lines


# ----------------------------------------------------------------------------- CLI
