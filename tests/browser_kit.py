"""What the browser tests share (a pytest plugin, named in conftest.py): the app served on tiny
or shipped checkpoints, one Chromium (Debian's /usr/bin/chromium) for the session, a desktop page,
and the gestures and measurements the tests repeat. Playwright is imported only when a browser
test runs."""
from __future__ import annotations

from pathlib import Path

import pytest

from app_server import running_app
from conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path("/tmp/shots")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SHIPPED = ROOT / "checkpoints"
TABS = ("Classify", "Explain", "Train", "Retrieve", "Analyze")
ANSWERED = "agree|disagree|Not one of|Unsure"       # the verdict once the models have answered



def shipped_ready() -> bool:
    return all((SHIPPED / f"{name}.{ext}").exists() for name in ("scratch", "finetuned") for ext in ("keras", "json"))


@pytest.fixture(scope="session", params=["tiny", pytest.param("shipped", marks=pytest.mark.slow)])
def server(request, tiny_checkpoints, tmp_path_factory):
    if request.param == "shipped" and not shipped_ready():
        pytest.skip("no shipped checkpoints in checkpoints/")
    checkpoints = tiny_checkpoints if request.param == "tiny" else SHIPPED
    options = {}
    if request.param == "tiny":
        # a tiny database searched by pixels, and the tiny models' analysis kept out of the repo
        from test_retrieval import make_database

        root = tmp_path_factory.mktemp("tiny-db")
        options = dict(database=make_database(root / "images_database", per_class=3, classes=(0, 1, 2)),
                       retrieval_extractor="pixels", analysis_cache=root / "cache")
    with running_app(checkpoints, tmp_path_factory.mktemp("runs"), **options) as (url, service):
        yield request.param, url, service


@pytest.fixture(scope="session")
def browser():
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(server[1])
    page.wait_for_selector("#sketch canvas", timeout=30_000)
    yield page
    context.close()


def draw_one(page) -> None:
    """A vertical stroke in the middle of the canvas, without touching the toolbar first."""
    page.locator("#sketch canvas").first.scroll_into_view_if_needed()
    box = page.locator("#sketch canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx + 4, cy - 0.3 * box["height"])
    page.mouse.down()
    page.mouse.move(cx - 4, cy + 0.3 * box["height"], steps=15)
    page.mouse.up()


def draw_seven(page) -> None:
    """A 7 as a visitor draws one: the bar, then the stem down to the left."""
    canvas = page.locator("#sketch canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    at = lambda fx, fy: (box["x"] + fx * box["width"], box["y"] + fy * box["height"])   # noqa: E731
    page.mouse.move(*at(0.3, 0.22))
    page.mouse.down()
    page.mouse.move(*at(0.72, 0.22), steps=10)
    page.mouse.move(*at(0.45, 0.8), steps=12)
    page.mouse.up()


def open_tab(page, name: str) -> None:
    """Click a top-level tab, through Gradio's "More tabs" menu if the screen is too narrow."""
    tab = page.locator("#tabs [role=tablist]").first.get_by_role("tab", name=name, exact=True)
    if tab.count() and tab.is_visible():
        tab.click()
    else:
        page.locator("#tabs .overflow-menu button[aria-label='More tabs']").first.click()
        page.locator("#tabs .overflow-dropdown button", has_text=name).first.click()


def top_label(page, name: str) -> str:
    return page.locator(f"#label-{name} h2").first.inner_text(timeout=20_000).strip()


def scroll_through(page) -> None:
    """Scroll the whole page so lazily loaded images are fetched before a full-page screenshot."""
    height = page.evaluate("document.body.scrollHeight")
    for _ in range(0, height, 400):
        page.evaluate("window.scrollBy(0, 400)")
        page.wait_for_timeout(50)
    page.wait_for_timeout(500)
    page.evaluate("window.scrollTo(0, 0)")


CONTRAST_JS = """
(el) => {
  // the text's colour over the background as the screen shows it: every ancestor's background
  // painted in turn on a 1x1 canvas (a transparent or half-transparent one lets its parent show)
  const g = Object.assign(document.createElement('canvas'), {width: 1, height: 1}).getContext('2d');
  const paint = (css) => { g.fillStyle = '#000'; g.fillStyle = css; g.fillRect(0, 0, 1, 1); };
  const pixel = () => Array.from(g.getImageData(0, 0, 1, 1).data).slice(0, 3);
  const chain = [];
  for (let n = el; n; n = n.parentElement) chain.unshift(n);
  g.fillStyle = '#fff'; g.fillRect(0, 0, 1, 1);            // the browser's canvas under the page
  for (const n of chain) { const bg = getComputedStyle(n).backgroundColor; if (bg) paint(bg); }
  const back = pixel();
  paint(getComputedStyle(el).color);
  const fore = pixel();
  const lum = ([r, g, b]) => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const [a, b] = [lum(fore), lum(back)];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}
"""


def contrast_failures(page, selector: str) -> list[str]:
    """Each visible element of ``selector`` with text whose contrast is under WCAG AA (4.5:1)."""
    failures = []
    for element in page.locator(selector).all():
        if element.is_visible() and element.inner_text().strip():
            ratio = element.evaluate(CONTRAST_JS)
            if ratio < 4.5:
                failures.append(f"{selector} {element.inner_text().strip()[:40]!r}: {ratio:.2f}:1")
    return failures
