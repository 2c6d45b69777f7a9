"""The teaching loop in a real browser: correct five drawings as a new class, teach, and see
the models answer with it."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")


def _draw_seven(page, shift: float) -> None:
    canvas = page.locator("#sketch canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    at = lambda fx, fy: (box["x"] + (fx + shift) * box["width"], box["y"] + fy * box["height"])   # noqa: E731
    page.mouse.move(*at(0.3, 0.22))
    page.mouse.down()
    page.mouse.move(*at(0.72, 0.22), steps=10)
    page.mouse.move(*at(0.45, 0.8), steps=12)
    page.mouse.up()


def test_correct_drawings_as_a_new_class_teach_and_see_it_answered(page, server):
    if server[0] != "tiny":
        pytest.skip("the tiny models teach in seconds")
    page.locator("#teach").get_by_text("Wrong? Teach the models").click()
    page.locator("#teach-add").click()               # nothing classified yet: said, not raised
    page.wait_for_function("document.querySelector('#teach-status').innerText.includes('first')")
    for i in range(5):
        if i:
            page.get_by_role("button", name="Clear").first.click()
        _draw_seven(page, (i - 2) * 0.04)
        page.wait_for_function("document.querySelector('#verdict').innerText.includes('say')"
                               " || document.querySelector('#verdict').innerText.includes('Not one')"
                               " || document.querySelector('#verdict').innerText.includes('Unsure')", timeout=30_000)
        label = page.locator("#teach-label input")
        label.fill("7")
        label.press("Enter")
        page.locator("#teach-add").click()
        page.wait_for_function(f"(document.querySelector('#teach-counts') || {{innerText: ''}}).innerText"
                               f".startsWith('{i + 1} example')", timeout=20_000)
    assert page.locator("#teach-strip img").count() == 5
    page.locator("#teach-run").click()
    page.wait_for_function("document.querySelector('#teach-progress').innerText.includes('Taught')"
                           " || !!document.querySelector('#teach-progress .error')", timeout=180_000)
    assert "new class 7" in page.locator("#teach-progress").inner_text()
    assert "taught" in page.locator("#model-set input").first.input_value()
    # the session now classifies with the taught set: four classes, the new one among them
    page.get_by_role("button", name="Clear").first.click()
    _draw_seven(page, 0.0)
    service = server[2]
    taught = [set_id for label, set_id in service.available_sets() if "new class 7" in label][-1]
    assert service.model_set(taught).class_names[-1] == "7"
    page.wait_for_function("document.querySelector('#verdict').innerText.includes('say')", timeout=30_000)
    assert "taught" in page.locator("#set-notice").inner_text() or "trained" in page.locator("#set-notice").inner_text()
