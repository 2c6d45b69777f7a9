"""The disk bound (cvdemo.housekeeping): least recently used first, whole folders, never what is
held or was just used; runs beyond the limit oldest first; the service says what it holds."""
from __future__ import annotations

import os
import time
from pathlib import Path

from cvdemo.housekeeping import Area, Housekeeper, prune_runs, sweep, units

NOW = time.time()


def write(path: Path, size: int, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


def test_sweep_removes_least_recently_used_files_until_under_the_bound(tmp_path):
    old = write(tmp_path / "a" / "old.png", 400, age_s=3000)
    middle = write(tmp_path / "a" / "middle.png", 400, age_s=2000)
    new = write(tmp_path / "a" / "new.png", 400, age_s=1000)
    report = sweep([Area(tmp_path / "a")], limit_bytes=900, now=NOW)
    assert report.removed == [old] and report.before == 1200 and report.after == 800
    assert middle.exists() and new.exists()


def test_sweep_never_removes_held_or_recently_used_files(tmp_path):
    held = write(tmp_path / "a" / "held.png", 500, age_s=5000)
    recent = write(tmp_path / "a" / "recent.png", 500, age_s=10)
    spare = write(tmp_path / "a" / "spare.png", 500, age_s=4000)
    report = sweep([Area(tmp_path / "a")], limit_bytes=0, held=[held], hold_s=60, now=NOW)
    assert report.removed == [spare] and held.exists() and recent.exists()
    assert report.held == 1000 and report.after == 1000


def test_folder_units_go_whole_and_a_held_file_holds_its_folder(tmp_path):
    upload = write(tmp_path / "gradio" / "f00d" / "digit.png", 300, age_s=3000)
    write(tmp_path / "gradio" / "f00d" / "other.png", 300, age_s=100)     # the folder was used 100 s ago
    example = write(tmp_path / "gradio" / "beef" / "example.png", 300, age_s=9000)
    for folder in ("f00d", "beef"):        # a folder's own time is when its files were written
        os.utime(tmp_path / "gradio" / folder, (NOW - 9000, NOW - 9000))
    found = {u.path.name: u for u in units(Area(tmp_path / "gradio", "folders"))}
    assert found["f00d"].size == 600 and found["f00d"].used == NOW - 100
    report = sweep([Area(tmp_path / "gradio", "folders")], limit_bytes=0, held=[example], now=NOW)
    assert report.removed == [tmp_path / "gradio" / "f00d"] and not upload.exists() and example.exists()


def test_a_missing_area_counts_nothing(tmp_path):
    assert sweep([Area(tmp_path / "nowhere")], limit_bytes=0).before == 0


def test_runs_beyond_the_limit_go_oldest_first_unless_held(tmp_path):
    runs = [write(tmp_path / f"run-2026120{i}-120000-abc{i}" / "run.json", 10, age_s=5000).parent for i in range(6)]
    for run in runs:
        os.utime(run, (NOW - 5000, NOW - 5000))
    write(tmp_path / ".run-20261209-120000-staging" / "x.keras", 10, age_s=5000)   # a training's staging
    removed = prune_runs(tmp_path, max_runs=3, held=[runs[1]], now=NOW)
    assert removed == [runs[0], runs[2], runs[3]]
    assert [r.exists() for r in runs] == [False, True, False, False, True, True]
    assert (tmp_path / ".run-20261209-120000-staging").exists()


def test_housekeeper_runs_both_bounds_and_reports(tmp_path):
    write(tmp_path / "cache" / "old.png", 2 * 2**20, age_s=5000)
    for i in range(3):
        write(tmp_path / "runs" / f"run-2026120{i}-000000-x" / "run.json", 10, age_s=5000)
    lines = []
    keeper = Housekeeper(lambda: [Area(tmp_path / "cache")], lambda: [], tmp_path / "runs", limit_bytes=2**20,
                         max_runs=1, hold_s=0, log=lines.append)
    report = keeper.run_once()
    assert len(report.removed) == 1 and len(report.runs_removed) == 2 and keeper.last is report
    assert "removed 1 cached item(s) and 2 run(s)" in lines[0]


def test_the_service_holds_its_loaded_sets_live_additions_and_running_training(tiny_checkpoints, tmp_path):
    from cvdemo.service import Service
    from cvdemo.service.jobs import TrainingJob

    service = Service(checkpoints=tiny_checkpoints, runs=tmp_path / "runs", analysis_cache=tmp_path / "cache",
                      database=tmp_path / "db", inference="keras")
    held = service.held_paths()
    assert Path(tiny_checkpoints) in held
    service.job = TrainingJob(id="run-20261202-000000-abcdef", owner="visitor", data=tmp_path / "data")
    service._run_owners["run-20261201-000000-aaaaaa"] = "visitor"
    held = service.held_paths()
    assert tmp_path / "data" in held and tmp_path / "runs" / "run-20261202-000000-abcdef" in held
    assert tmp_path / "runs" / "run-20261201-000000-aaaaaa" in held
    service.job.done.set()
    service.end_session("visitor")           # the page closed: its run is no longer held
    held = service.held_paths()
    assert tmp_path / "runs" / "run-20261201-000000-aaaaaa" not in held and tmp_path / "data" not in held
    areas = {a.path for a in service.written_areas()}
    assert tmp_path / "runs" in areas and tmp_path / "cache" / "analysis" in areas


def test_the_app_holds_the_files_its_ui_shows(tiny_checkpoints, tmp_path):
    import webapp

    from app_server import tiny_service

    service = tiny_service(tiny_checkpoints, tmp_path)
    demo = webapp.build_app(service)
    keeper = webapp.keep_bounded(demo, service)
    shown = {Path(f) for block in demo.blocks.values() for f in (getattr(block, "temp_files", None) or ())}
    assert shown and shown <= set(keeper.held())
    assert any(a.units == "folders" and "gradio" in str(a.path) for a in keeper.areas())
