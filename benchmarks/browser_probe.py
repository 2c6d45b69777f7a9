"""Times the app as a visitor sees it, in Chromium (playwright): from the end of a stroke (pointer
up) or an upload (the file input's change) to the verdict's text changing on screen, timed by the
page's own clock. Also checks, on a 390x844 phone, that the verdict with each model's answer is in
view after a stroke. Run by ``benchmarks/browser.py`` in its own process; writes one JSON document.

    python benchmarks/browser_probe.py --url URL --strokes 15 --uploads 15 --image A.png --image B.png --out X.json
"""
from __future__ import annotations

import argparse
import json
import time

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
# arm a timer: t0 at the trigger event (captured before the app's handlers), stop at the first
# change of the verdict's banner afterwards (not of the verdict's block: a status line comes and goes)
ARM = """([selector, event]) => {
  const verdict = document.querySelector('#verdict');
  const banner = () => verdict.querySelector('.agree,.disagree,.unknown');
  const before = banner()?.outerHTML;
  window.__answered = null;
  let t0 = null;
  document.querySelector(selector).addEventListener(event, () => { t0 = performance.now(); }, {once: true, capture: true});
  const watch = new MutationObserver(() => {
    if (t0 !== null && banner() && banner().outerHTML !== before) {
      watch.disconnect();
      window.__answered = performance.now() - t0;
    }
  });
  watch.observe(verdict, {subtree: true, childList: true, characterData: true, attributes: true});
}"""
IN_VIEW = """() => {
  const r = document.querySelector('#verdict .each-model')?.getBoundingClientRect();
  return !!r && r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;
}"""


def _stroke(page, k: int) -> None:
    """A 7, shifted a little each time so no two drawings are the same picture."""
    box = page.locator("#sketch canvas").first.bounding_box()
    at = lambda fx, fy: (box["x"] + fx * box["width"], box["y"] + fy * box["height"])   # noqa: E731
    shift = 0.015 * (k % 5)
    page.mouse.move(*at(0.3 + shift, 0.22))
    page.mouse.down()
    page.mouse.move(*at(0.72, 0.22 + shift), steps=10)
    page.mouse.move(*at(0.45 + shift, 0.8), steps=12)
    page.mouse.up()


def _clear(page) -> None:
    page.click("#clear-drawing")
    page.wait_for_function("!document.querySelector('#verdict .agree,#verdict .disagree,#verdict .unknown')",
                           timeout=20_000)


def strokes(page, n: int, timeout_ms: int) -> list[float]:
    out = []
    for k in range(n + 1):                   # the first warms the page's connection: not counted
        _clear(page)
        page.evaluate(ARM, ["#sketch canvas", "pointerup"])
        _stroke(page, k)
        page.wait_for_function("window.__answered !== null", timeout=timeout_ms)
        if k:
            out.append(page.evaluate("window.__answered"))
        time.sleep(0.3)
    return out


def uploads(page, n: int, images: list[str], timeout_ms: int) -> list[float]:
    page.get_by_role("tab", name="Upload, paste or webcam").click()
    field = page.locator("#upload input[type=file]").first
    out = []
    for k in range(n + 1):
        page.evaluate(ARM, ["#upload input[type=file]", "change"])
        field.set_input_files(images[k % len(images)])
        page.wait_for_function("window.__answered !== null", timeout=timeout_ms)
        if k:
            out.append(page.evaluate("window.__answered"))
        time.sleep(0.3)
        field = page.locator("#upload input[type=file]").first
        if not field.count():                # the image is shown: clear it to get the drop zone back
            page.locator("#upload button[aria-label='Clear']").first.click()
            field = page.locator("#upload input[type=file]").first
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--strokes", type=int, default=15)
    parser.add_argument("--uploads", type=int, default=15)
    parser.add_argument("--image", action="append", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    result = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(args.url, wait_until="load")
        page.wait_for_selector("#sketch canvas", timeout=60_000)
        result["stroke_ms"] = strokes(page, args.strokes, int(args.timeout * 1000))
        result["upload_ms"] = uploads(page, args.uploads, args.image, int(args.timeout * 1000))
        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        phone.goto(args.url, wait_until="load")
        phone.wait_for_selector("#sketch canvas", timeout=60_000)
        seen = []
        for k in range(3):
            _clear(phone)
            phone.evaluate(ARM, ["#sketch canvas", "pointerup"])
            _stroke(phone, k)
            phone.wait_for_function("window.__answered !== null", timeout=int(args.timeout * 1000))
            seen.append(bool(phone.evaluate(IN_VIEW)))
        result["phone_verdict_in_view"] = sum(seen) / len(seen)
        browser.close()
    with open(args.out, "w") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
