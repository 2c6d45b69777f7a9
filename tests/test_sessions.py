"""What belongs to one visitor's session: the runs they trained and their training, in process."""
from __future__ import annotations

import pytest

pytest.importorskip("tensorflow")


def test_a_visitor_leaving_stops_their_training_at_the_next_batch(tiny_checkpoints, tiny_dataset, tmp_path):
    from cvdemo.config import TrainConfig
    from cvdemo.service import Service

    service = Service(checkpoints=tiny_checkpoints, runs=tmp_path / "runs", warm=False,
                      analysis_cache=tmp_path / "cache")
    job = service.start_training(tiny_dataset, ("scratch",), TrainConfig(epochs=200, batch_size=4), owner="alice")
    try:
        service.end_session("bob")                 # somebody else leaving changes nothing
        assert not job.stop.is_set()
        service.end_session("alice")
        assert job.stop.is_set()
        assert job.done.wait(120), "the training did not stop"
    finally:
        job.stop.set()
        job.done.wait(120)
    assert not any(e.get("kind") == "epoch" and e.get("epoch", 0) >= 199 for e in job.events)
    assert [s for _, s in service.available_sets("alice")] == ["shipped"]    # nothing finished: no new set
