"""Classify's verdict banner, from a classification's fields (no models needed)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("gradio")
from webapp.tabs.classify import verdict  # noqa: E402

PROBABILITIES = {"0_digits": 0.05, "1_digits": 0.15, "2_digits": 0.8}


def _rejected(looks_like: str | None):
    answer = SimpleNamespace(label="2_digits", probabilities=PROBABILITIES, known=False)
    return SimpleNamespace(models={"scratch": answer, "finetuned": answer}, known=False, agree=True,
                           looks_like=SimpleNamespace(label=looks_like) if looks_like else None)


def test_a_rejected_input_that_looks_like_another_digit_is_not_one_of_the_known():
    text = verdict(_rejected("7"))
    assert "Not one of 0, 1, 2" in text and "looks like a <b>7</b>" in text


def test_a_rejected_input_whose_neighbours_are_a_known_class_is_unsure_not_a_contradiction():
    text = verdict(_rejected("2"))                 # a faint photo of a 2: unlike training, near database 2s
    assert "Unsure: perhaps a 2" in text and "Not one of" not in text


def test_each_models_answer_is_in_the_banner_for_the_phone_bar():
    assert "scratch <b>2</b> 80% ✗" in verdict(_rejected(None))
