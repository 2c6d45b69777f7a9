"""The app's states in a real Chromium: every text the app styles itself readable in both themes,
bad files said once beside the drop zone that took them, and a visitor who closes the page
leaving nothing behind (their added images forgotten, their training stopped), and buttons
pressed too early answered beside them."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from browser_kit import ANSWERED, CHROMIUM, contrast_failures, draw_one, open_tab
from conftest import ROOT

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed (apt-get install chromium)", allow_module_level=True)

QUERY = sorted((ROOT / "query_images" / "2").iterdir())[0]
# every element whose colours style.css sets, and the text inside the banners
STYLED = ["#verdict > div", "#verdict .notice", "#verdict .each-model", "#retrieve-verdict > div",
          "#train-status .train-status", "#train-progress p", ".curve-legend > span", ".draw-tools button"]


def _bad_file(folder: Path) -> Path:
    bad = folder / "notanimage.png"
    bad.write_text("this is not an image")
    return bad


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_styled_text_is_readable_in_both_themes(browser, server, theme, tmp_path):
    """WCAG AA (4.5:1) for each text the app colours itself, light and dark: the waiting,
    answered and error banners, the training status, bar and legend, the canvas's buttons."""
    kind, url, _ = server
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(url + f"?__theme={theme}")
    page.wait_for_selector("#sketch canvas", timeout=30_000)
    failures = contrast_failures(page, "#verdict > div") + contrast_failures(page, ".draw-tools button")   # waiting
    draw_one(page)
    sync_api.expect(page.locator("#verdict")).to_contain_text(re.compile(ANSWERED), timeout=30_000)
    failures += contrast_failures(page, "#verdict > div") + contrast_failures(page, "#verdict .notice")
    page.get_by_role("tab", name="Upload, paste or webcam").click()
    page.locator("#upload input[type=file]").set_input_files(str(_bad_file(tmp_path)))
    sync_api.expect(page.locator("#verdict .error")).to_be_visible(timeout=30_000)
    failures += contrast_failures(page, "#verdict > div")
    open_tab(page, "Train")
    page.locator("#train-stop").click()                  # nothing of this visitor's is training
    sync_api.expect(page.locator("#train-status .train-status.error")).to_be_visible(timeout=10_000)
    failures += sum((contrast_failures(page, s) for s in STYLED[4:7]), [])
    open_tab(page, "Retrieve")
    page.locator("#retrieve-query input[type=file]").set_input_files(str(QUERY))
    sync_api.expect(page.locator("#retrieve-gallery .caption-label").first).to_be_visible(timeout=60_000)
    failures += contrast_failures(page, "#retrieve-verdict > div")
    context.close()
    assert not failures, f"{theme}: " + "; ".join(failures)


def test_on_a_phone_the_verdict_bar_is_readable_in_the_dark(browser, server):
    """The phone's fixed verdict bar (with each model's answer in it) in the dark theme."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(server[1] + "?__theme=dark")
    page.wait_for_selector("#sketch canvas", timeout=30_000)
    draw_one(page)
    sync_api.expect(page.locator("#verdict .each-model")).to_be_visible(timeout=30_000)
    failures = contrast_failures(page, "#verdict > div") + contrast_failures(page, "#verdict .each-model")
    context.close()
    assert not failures, "; ".join(failures)


@pytest.mark.slow
def test_a_bad_file_is_said_once_beside_its_drop_zone(page, server, tmp_path):
    """An unreadable upload, query or input to explain: its error in that tab's verdict, the
    last good answer cleared, the drop zone empty again, and no toast."""
    kind, _, _ = server
    if kind != "tiny":
        pytest.skip("one server is enough")
    bad = _bad_file(tmp_path)
    draw_one(page)
    verdict = page.locator("#verdict")
    sync_api.expect(verdict).to_contain_text(re.compile(ANSWERED), timeout=30_000)
    page.get_by_role("tab", name="Upload, paste or webcam").click()
    page.locator("#upload input[type=file]").set_input_files(str(bad))
    sync_api.expect(verdict.locator(".error")).to_contain_text("could not be read", timeout=30_000)
    sync_api.expect(page.locator("#seen-scratch img")).to_have_count(0, timeout=10_000)
    sync_api.expect(page.locator("#upload input[type=file]")).to_have_count(1, timeout=10_000)

    # (tab, drop zone, verdict, what a good answer shows)
    for tab, zone, said, shown in (("Retrieve", "#retrieve-query", "#retrieve-verdict", "#retrieve-gallery .caption-label"),
                                   ("Explain", "#explain-input", "#explain-verdict", "#gradcam-scratch img")):
        open_tab(page, tab)
        page.locator(f"{zone} input[type=file]").set_input_files(str(QUERY))
        sync_api.expect(page.locator(shown).first).to_be_visible(timeout=60_000)
        page.locator(f"{zone} input[type=file]").set_input_files(str(bad))
        sync_api.expect(page.locator(f"{said} .error")).to_contain_text("could not be read", timeout=30_000)
        sync_api.expect(page.locator(shown)).to_have_count(0, timeout=10_000)
        sync_api.expect(page.locator(f"{zone} input[type=file]")).to_have_count(1, timeout=10_000)
    assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").all_inner_texts()


def test_a_button_pressed_too_early_or_a_hostile_zip_is_said_beside_it(page, tmp_path):
    """"Find similar images" before any input, "Add to database" without files, a zip reaching
    outside its folder: each said where the visitor looks (the verdict, under the button, under
    Start), and no toast."""
    import zipfile

    hostile = tmp_path / "hostile.zip"
    with zipfile.ZipFile(hostile, "w") as archive:
        archive.writestr("0_digits/a.png", QUERY.read_bytes())
        archive.writestr("../../evil.png", b"x")
    open_tab(page, "Train")
    page.get_by_label("My own zip of class folders").check()
    page.locator("#train-zip input[type=file]").set_input_files(str(hostile))
    sync_api.expect(page.locator("#train-status .error")).to_contain_text("unsafe path", timeout=20_000)
    open_tab(page, "Classify")
    page.locator("#send-to-retrieve").click()
    sync_api.expect(page.locator("#verdict .error")).to_contain_text("Draw or upload a digit first", timeout=10_000)
    open_tab(page, "Retrieve")
    page.get_by_text("Add images to the database").click()
    page.locator("#retrieve-add").click()
    sync_api.expect(page.locator("#retrieve-add-report")).to_contain_text("Not added", timeout=10_000)
    page.wait_for_timeout(300)
    assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").all_inner_texts()


def _until(condition, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.25)
    return condition()


def test_closing_the_page_forgets_added_images_and_stops_training(browser, server, tmp_path):
    """demo.unload: the visitor's added image leaves the disk and their training stops at the
    next batch, with no request from them."""
    kind, url, service = server
    if kind != "tiny":
        pytest.skip("one server is enough")
    from conftest import digit_image

    mine = tmp_path / "leaving.png"
    digit_image(1, 5).save(mine)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#sketch canvas", timeout=30_000)
    open_tab(page, "Retrieve")
    page.get_by_text("Add images to the database").click()
    page.locator("#retrieve-add-files input[type=file]").set_input_files(str(mine))
    page.locator("#retrieve-add").click()
    sync_api.expect(page.locator("#retrieve-mine img")).to_have_count(1, timeout=30_000)
    added = [p for p in service.private.root.rglob("*") if p.is_file()]
    assert added, "the addition is not on disk"
    open_tab(page, "Train")
    page.locator("#train-start").click()
    assert _until(lambda: service.job is not None and not service.job.done.is_set()), "training did not start"
    job = service.job
    context.close()
    assert _until(job.done.is_set, 60), "the closed page's training is still running"
    assert job.stop.is_set()
    assert _until(lambda: not any(p.exists() for p in added)), "the closed page's additions are still on disk"
