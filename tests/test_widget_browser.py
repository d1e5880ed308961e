"""The ClickWidget in a real browser: Voila serves a notebook, headless Chromium clicks the slide.

Voila (started here on 127.0.0.1) runs a notebook written into tmp_path that shows the widget on
the synthetic slide with vit_tiny; Playwright drives Debian's /usr/bin/chromium (never a
downloaded browser). The kernel writes ``widget.state()`` to a JSON file after every redraw, which
is how the test sees the kernel-side session. A second widget below it runs a weight-free
baseline (region growing) with its image at a fractional CSS offset, where Chromium's whole-pixel
mouse coordinates used to put clicks one pixel off. Without chromium or playwright the test is
skipped, except under CI (the CI variable set), where it fails instead.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
import shapely

from histoclick.qupath import read_geojson

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SIZE, DISPLAY = 256, 384  # tile pixels, CSS pixels: the page shows the tile scaled by 1.5
FRACTIONAL_MARGIN = "0.1px 0px 0px 0.1px"  # puts the baseline's image at fractional CSS offsets
IMAGE = "img.widget-image:not(.histoclick-overview)"  # the click images, not the overviews
OVERVIEW = "img.histoclick-overview"


def missing_tools() -> list[str]:
    missing = [] if CHROMIUM.exists() else [f"{CHROMIUM} (apt-get install -y chromium)"]
    for module, package in (("playwright", "playwright"), ("voila", "voila")):
        if importlib.util.find_spec(module) is None:
            missing.append(f"the {package} Python package (pip install {package})")
    return missing


@pytest.fixture
def browser_tools():
    missing = missing_tools()
    if missing:
        message = "real-browser widget test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + "; under CI it must run, so .ci/run has to install them")
        pytest.skip(message)


def write_notebook(
    path: Path, slide: Path, geojson: Path, state: Path, baseline_geojson: Path, baseline_state: Path
) -> None:
    source = f"""\
import json
from functools import partial
import ipywidgets
from histoclick import load_model
from histoclick.evaluation.baselines import RegionGrowing
from histoclick.files import atomic_path
from histoclick.widgets import ClickWidget

model = load_model("vit_tiny", device="cpu")
widget = ClickWidget({str(slide)!r}, model, geojson={str(geojson)!r}, magnification=10,
                     origin=(0, 0), size={SIZE}, display_width={DISPLAY}, outline_tolerance=None)
baseline = ClickWidget({str(slide)!r}, RegionGrowing(), geojson={str(baseline_geojson)!r},
                       magnification=10, origin=(0, 0), size={SIZE}, display_width={DISPLAY})
baseline.image.layout.margin = "{FRACTIONAL_MARGIN}"

def dump_state(path, w):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(w.state()))

for w, path in ((widget, {str(state)!r}), (baseline, {str(baseline_state)!r})):
    w.on_update(partial(dump_state, path))
    dump_state(path, w)
ipywidgets.VBox([widget, baseline])"""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(notebook, path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_voila(root: Path, port: int, log: Path) -> subprocess.Popen:
    home = root.parent / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable,
        "-m",
        "voila",
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--Voila.port={port}",
        "--Voila.port_retries=0",
        "--show_tracebacks=True",
        str(root),
    ]
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_for_server(url: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"voila exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(
        f"voila did not answer {url} within {timeout} s:\n{log.read_text()[-3000:]}"
    )


def stop(process: subprocess.Popen) -> None:
    """Stop voila and its kernel (its own process group, started above)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_state(path: Path, condition, what: str, timeout: float = 60) -> dict:
    """Poll the kernel's state file until ``condition(state)`` holds."""
    deadline, state = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if path.exists():
            state = json.loads(path.read_text())
            if state.get("error"):
                raise AssertionError(
                    f"the widget reported an error while waiting for {what}: {state['error']}"
                )
            if condition(state):
                return state
        time.sleep(0.05)
    raise AssertionError(
        f"kernel state never showed {what} within {timeout} s; last state: {state}"
    )


# In-page helpers. The round trip runs from the pointerdown that starts a click to the moment the
# new overlay PNG (a new blob URL on the <img>) is decoded and ready to paint.
ARM_ROUND_TRIP = """(selector) => {
  const img = document.querySelector(selector);
  window.__roundTrip = new Promise((resolve, reject) => {
    let start = null;
    document.addEventListener('pointerdown', () => { start = performance.now(); }, {capture: true, once: true});
    const observer = new MutationObserver(() => {
      observer.disconnect();
      img.decode().then(() => resolve(performance.now() - start), reject);
    });
    observer.observe(img, {attributes: true, attributeFilter: ['src']});
    setTimeout(() => reject(new Error('the overlay did not change within 60 s')), 60000);
  });
}"""

READ_PIXELS = """async ([selector, index, x, y, color]) => {
  const img = document.querySelectorAll(selector)[index];
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let hash = 0, count = 0;
  for (let i = 0; i < data.length; i++) hash = (Math.imul(hash, 31) + data[i]) >>> 0;
  for (let i = 0; i < data.length; i += 4)
    if (data[i] === color[0] && data[i + 1] === color[1] && data[i + 2] === color[2]) count++;
  const at = (y * canvas.width + x) * 4;
  return {hash, count, width: canvas.width, height: canvas.height,
          pixel: [data[at], data[at + 1], data[at + 2]]};
}"""


def read_pixels(page, index: int = 0, x: int = 0, y: int = 0, color=(0, 0, 0)) -> dict:
    """The ``index``-th widget image as the page shows it: a hash of its pixels, the pixel at
    ``(x, y)`` and how many pixels are exactly ``color``."""
    return page.evaluate(READ_PIXELS, [IMAGE, index, x, y, list(color)])


def read_settled_pixel(page, selector: str, x: int, y: int, tries: int = 5) -> list[int]:
    """The pixel at ``(x, y)`` of the first ``selector`` image, read again when the kernel
    replaced the image while the page was decoding it (the decode then fails)."""
    for _ in range(tries - 1):
        try:
            return page.evaluate(READ_PIXELS, [selector, 0, x, y, [0, 0, 0]])["pixel"]
        except Exception:  # noqa: BLE001 - playwright's Error: "The source image cannot be decoded"
            time.sleep(0.2)
    return page.evaluate(READ_PIXELS, [selector, 0, x, y, [0, 0, 0]])["pixel"]


def click_tile_pixel(page, box: dict, column: int, row: int, button: str) -> None:
    """Click the centre of a tile pixel of the displayed (scaled) image."""
    scale_x, scale_y = box["width"] / SIZE, box["height"] / SIZE
    page.mouse.click(
        box["x"] + (column + 0.5) * scale_x, box["y"] + (row + 0.5) * scale_y, button=button
    )


def misplaced_before(start: float, size: float, pixels: range) -> list[int]:
    """Tile pixels whose centre the old maths (truncated client coordinate minus the image's
    edge, no correction) put on another pixel, for an image edge at CSS ``start``."""
    scale = size / SIZE
    return [
        p
        for p in pixels
        if math.floor((math.floor(start + (p + 0.5) * scale) - start) / scale) != p
    ]


def timed_click(page, box, column, row, button) -> float:
    """Click and return the click-to-overlay round trip in milliseconds."""
    page.evaluate(ARM_ROUND_TRIP, IMAGE)
    click_tile_pixel(page, box, column, row, button)
    return page.evaluate("window.__roundTrip")


def near(pixel, color, tolerance=40) -> bool:
    return max(abs(a - b) for a, b in zip(pixel, color, strict=True)) < tolerance


@pytest.mark.slow
def test_click_segment_and_save_in_a_real_browser(browser_tools, synthetic_slide, tmp_path, capsys):
    from playwright.sync_api import sync_playwright

    from histoclick.overlay import NEGATIVE_COLOR, POSITIVE_COLOR
    from histoclick.widgets.overview import VIEWPORT_COLOR

    root = tmp_path / "notebooks"
    root.mkdir()
    geojson, state_file, log = (
        tmp_path / "objects.geojson",
        tmp_path / "state.json",
        tmp_path / "voila.log",
    )
    baseline_geojson, baseline_state = tmp_path / "baseline.geojson", tmp_path / "baseline.json"
    write_notebook(
        root / "widget.ipynb",
        synthetic_slide.path,
        geojson,
        state_file,
        baseline_geojson,
        baseline_state,
    )
    port = free_port()
    started = time.monotonic()
    server = start_voila(root, port, log)
    try:
        wait_for_server(f"http://127.0.0.1:{port}/", server, log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page(
                    viewport={"width": 1280, "height": 900}, device_scale_factor=1
                )
                page.goto(f"http://127.0.0.1:{port}/voila/render/widget.ipynb", timeout=180_000)
                image = page.locator(IMAGE).first
                image.wait_for(state="visible", timeout=180_000)
                wait_for_state(
                    state_file,
                    lambda s: s["clicks"] == [] and s["embedding_ready"],
                    "the widget ready (its embedding computed in the background)",
                )
                box = image.bounding_box()
                assert round(box["width"]) == DISPLAY  # shown scaled: the click maths must undo it
                before = read_pixels(page)
                assert (before["width"], before["height"]) == (SIZE, SIZE)

                # Left click: a positive click at the tile pixel under the pointer.
                left_ms = timed_click(page, box, 66, 133, "left")
                state = wait_for_state(
                    state_file, lambda s: len(s["clicks"]) == 1, "the left click"
                )
                assert state["clicks"] == [{"x": 66, "y": 133, "positive": True}]
                after = read_pixels(page, 0, 68, 135)
                assert after["hash"] != before["hash"], "the overlay in the page did not change"
                assert near(after["pixel"], POSITIVE_COLOR), after["pixel"]
                left = state

                # Right click: negative, and the browser's own context menu is suppressed.
                right_ms = timed_click(page, box, 200, 20, "right")
                state = wait_for_state(
                    state_file, lambda s: len(s["clicks"]) == 2, "the right click"
                )
                assert state["clicks"][1] == {"x": 200, "y": 20, "positive": False}
                right = state
                assert near(read_pixels(page, 0, 202, 22)["pixel"], NEGATIVE_COLOR)

                page.get_by_role("button", name="Undo").first.click()
                state = wait_for_state(state_file, lambda s: len(s["clicks"]) == 1, "the undo")
                assert state["clicks"] == [{"x": 66, "y": 133, "positive": True}]
                mask_pixels = state["mask_pixels"]
                assert mask_pixels > 0

                page.locator(".widget-dropdown", has_text="Class").first.locator("select").select_option(
                    "Stroma"
                )
                # Accept writes the object at once, even when it runs on into a neighbour.
                page.get_by_role("button", name="Accept").first.click()
                state = wait_for_state(state_file, lambda s: s["saved"] == 1, "the accept")
                assert state["pending_parts"] == 0 and state["object_id"] is not None
                saved_state = state

                # The overview: the viewport drawn on the thumbnail; a click there centres the
                # viewport on that point (thumbnail pixel -> level-0, exact to the pixel).
                overview = page.locator(OVERVIEW).first
                obox = overview.bounding_box()
                width, height = state["overview"]["width"], state["overview"]["height"]
                assert (round(obox["width"]), round(obox["height"])) == (width, height)
                rect_left, rect_top = state["overview"]["rectangle"][:2]
                corner = read_settled_pixel(page, OVERVIEW, rect_left, rect_top)
                assert near(corner, VIEWPORT_COLOR), corner
                before = state["viewport"]
                page.mouse.click(
                    obox["x"] + 100.5 * obox["width"] / width,
                    obox["y"] + 90.5 * obox["height"] / height,
                )
                state = wait_for_state(
                    state_file, lambda s: s["viewport"] != before, "the overview click"
                )
                extent, ds = SIZE * state["viewport"]["downsample"], state["overview"]["downsample"]
                assert math.floor((state["viewport"]["x"] + extent / 2) / ds) == 100
                assert math.floor((state["viewport"]["y"] + extent / 2) / ds) == 90

                # The object list shows the saved object; selecting it goes back to it.
                assert len(state["objects"]) == 1 and state["objects"][0].startswith("1: Stroma")
                after_overview = state["viewport"]
                page.locator(".widget-select select").first.select_option(index=0)
                went_to = wait_for_state(
                    state_file, lambda s: s["viewport"] != after_overview, "go to the object"
                )["viewport"]
                state = saved_state

                # The baseline widget, its image at fractional CSS offsets: a click on a pixel
                # centre that the old maths put one pixel off lands on that pixel.
                baseline_image = page.locator(IMAGE).nth(1)
                baseline_image.scroll_into_view_if_needed()
                wait_for_state(
                    baseline_state,
                    lambda s: s["clicks"] == [] and s["embedding_ready"],
                    "the baseline ready",
                )
                fbox = baseline_image.bounding_box()
                rows = misplaced_before(fbox["y"], fbox["height"], range(100, 160))
                columns = misplaced_before(fbox["x"], fbox["width"], range(100, 160)) or [130]
                assert rows, f"the image's top edge {fbox['y']} is not at a telling fraction"
                click_tile_pixel(page, fbox, columns[0], rows[0], "left")
                baseline = wait_for_state(
                    baseline_state, lambda s: len(s["clicks"]) == 1, "the baseline click"
                )
                assert baseline["clicks"] == [{"x": columns[0], "y": rows[0], "positive": True}]
                assert baseline["method"] == "region_growing" and baseline["mask_pixels"] > 0
                # Opacity, typed into the slider's readout: at 1 the mask is solid class colour
                # (all but the click marker), at the default 0.4 only its edge is.
                color, baseline_pixels = baseline["mask_color"], baseline["mask_pixels"]
                edge_only = read_pixels(page, 1, color=color)["count"]
                assert 0 < edge_only < baseline_pixels / 2
                slider = page.locator(".widget-slider", has_text="Opacity").nth(1)
                slider.hover()  # away from the image: keys go to the readout, not the shortcuts
                slider.locator(".widget-readout").fill("1")
                slider.locator(".widget-readout").press("Enter")
                wait_for_state(baseline_state, lambda s: s["mask_opacity"] == 1.0, "the opacity")
                deadline = time.monotonic() + 30
                marker = 13 * 13  # the click marker's box: a disc of radius 4 + 1 at 256 pixels
                while (solid := read_pixels(page, 1, color=color)["count"]) < baseline_pixels - marker:
                    assert time.monotonic() < deadline, (solid, baseline_pixels)
                    time.sleep(0.05)

                # A keyboard shortcut: Enter accepts while the pointer is over the image.
                baseline_image.hover()
                page.keyboard.press("Enter")
                wait_for_state(baseline_state, lambda s: s["saved"] == 1, "Enter (accept)")
            finally:
                browser.close()
    finally:
        stop(server)
    total = time.monotonic() - started

    (from_baseline,) = read_geojson(baseline_geojson).itertuples()
    assert from_baseline.name == "histoclick region_growing" and from_baseline.geometry.area > 0

    frame = read_geojson(geojson)
    assert len(frame) == 1 and frame["classification"].iloc[0] == "Stroma"
    assert frame["id"].iloc[0] == state["object_id"]
    geometry = frame.geometry.iloc[0]
    downsample = state["viewport"]["downsample"]
    assert downsample == 4.0
    assert geometry.area == mask_pixels * downsample**2  # the mask, traced in level-0 pixels
    minx, miny, maxx, maxy = geometry.bounds
    assert 0 <= minx and 0 <= miny and maxx <= SIZE * downsample and maxy <= SIZE * downsample
    assert frame["measurements"].iloc[0]["histoclick clicks"] == 1.0
    # Selecting it in the object list centred the viewport on it (kept on the slide).
    centre = shapely.box(*geometry.bounds).centroid
    extent = SIZE * went_to["downsample"]
    assert went_to["x"] <= centre.x <= went_to["x"] + extent
    assert went_to["y"] <= centre.y <= went_to["y"] + extent

    with capsys.disabled():
        for name, ms, kernel in (("left", left_ms, left), ("right", right_ms, right)):
            model_ms, update_ms = kernel["model_seconds"] * 1000, kernel["update_seconds"] * 1000
            print(
                f"\nclick-to-overlay round trip, {name} click: {ms:.0f} ms = model {model_ms:.0f} ms "
                f"+ overlay {update_ms - model_ms:.0f} ms + browser and transport {ms - update_ms:.0f} ms"
            )
        print(f"whole browser test: {total:.1f} s")
