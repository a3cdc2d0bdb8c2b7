"""``ns-viewer`` in a real headless Chromium: the panel's Select button, a click on a known object, the selection.

The viewer runs as its own process (``ns-viewer --load-config`` on the session's trained ``jnerf_run``, a free
localhost port, lossless PNG frames); Selenium drives Debian's ``chromium`` + ``chromium-driver`` with software WebGL.
The browser window is sized so that the 3D canvas has the training images' aspect (4:3); "Go to label view" puts
the viewer's camera at training view 0 (pose and field of view), so a rendered frame is that view and the scene's
ground-truth masks apply to it. Then: Select, click the canvas inside the largest object of that view (not floor or
ceiling), and check that (a) the panel's pointer callback ran (its status line, and the marker at the clicked
point), (b) the ``selection`` output the viewer shows covers that object's mask (IoU above a bound, the pixels
around the click inside), and (c) a screenshot was written (with ``JACOBINERF_UPDATE_DOCS=1`` it is also copied to
``docs/viewer_select.png``).

Skips, with the reason, only where no browser is installed (``.ci/run`` installs it with apt).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SOFTWARE_WEBGL = ["--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "viewer_select.png"
IOU_BOUND = 0.5
"""Measured on this object: 0.77 rendered in-process at 48x36 (tests/test_viewer.py), 0.74–0.77 through the browser."""


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        pytest.skip(f"no browser: {', '.join(missing)} missing (apt-get install -y chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")


@pytest.fixture(scope="module")
def viewer_url(jnerf_run, tmp_path_factory):
    """``ns-viewer --load-config`` on the trained run, in its own process, once for this module."""
    _require_browser()
    from run_utils import serve_viewer

    log_path = tmp_path_factory.mktemp("viewer") / "ns-viewer.log"
    with serve_viewer(jnerf_run.config_path, log_path, 180, ("--viewer.image-format", "png")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,700",
                "--force-device-scale-factor=1", *SOFTWARE_WEBGL]:  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


# ------------------------------------------------------------------------------------------------ page helpers
def _wait(driver, predicate, timeout: float, what: str, shot: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        time.sleep(0.2)
    driver.save_screenshot(str(shot))
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (screenshot {shot})")


def _text(driver) -> str:
    """All text of the page, including the parts of the scrolled panel that are out of view."""
    return driver.execute_script("return document.body.textContent")


def _button(driver, label: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.XPATH, f"//button[normalize-space(.)='{label}']")


def _press(driver, label: str) -> None:
    button = _button(driver, label)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()


def _input(driver, label: str):
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.XPATH, f"//label[normalize-space(.)='{label}']")
    return driver.find_element(By.ID, element.get_attribute("for"))


def _choose(driver, label: str, option: str, shot: Path) -> None:
    from selenium.webdriver.common.by import By

    field = _input(driver, label)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", field)
    field.click()
    xpath = f"//*[@role='option'][normalize-space(.)='{option}']"
    _wait(driver, lambda: driver.find_element(By.XPATH, xpath).is_displayed(), 20, f"option {option}", shot)
    driver.find_element(By.XPATH, xpath).click()


def _canvas(driver):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, "canvas[data-engine]")


def _canvas_image(driver) -> np.ndarray:
    """The 3D canvas as the page shows it (RGB uint8, CSS pixels)."""
    rect = _canvas(driver).rect
    page = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    ratio = page.width / driver.execute_script("return window.innerWidth")
    box = [round(v * ratio) for v in (rect["x"], rect["y"], rect["x"] + rect["width"], rect["y"] + rect["height"])]
    return np.asarray(page.crop(box))


def _stable_frame(driver, timeout: float, shot: Path, condition=lambda img: True) -> np.ndarray:
    """Wait until two canvas captures 0.7 s apart agree (the viewer finished re-rendering) and ``condition``."""
    state = {"last": None}

    def settled():
        img = _canvas_image(driver)
        last, state["last"] = state["last"], img
        stable = last is not None and np.abs(img.astype(int) - last).mean() < 0.5 and condition(img)
        return [img] if stable else None

    return _wait(driver, lambda: (time.sleep(0.5), settled())[1], timeout, "a settled frame", shot)[0]


def _fit_canvas_aspect(driver, aspect: float) -> None:
    """Resize the window until the 3D canvas has ``aspect`` (width / height)."""
    for _ in range(4):
        rect = _canvas(driver).rect
        if abs(rect["width"] / rect["height"] - aspect) < 0.004:
            return
        size = driver.get_window_size()
        driver.set_window_size(size["width"], size["height"] + round(rect["width"] / aspect - rect["height"]))
        time.sleep(0.5)


def _largest_object(scene: Path) -> tuple[np.ndarray, tuple[int, int], str]:
    """Mask, most interior pixel (y, x) and class name of the largest instance in frame 0 (training view 0) that
    is not floor or ceiling."""
    from scipy import ndimage

    inst = np.asarray(Image.open(scene / "semantic_instance" / "semantic_instance_0.png")).astype(np.int64)
    cls = np.asarray(Image.open(scene / "semantic_class" / "semantic_class_0.png")).astype(np.int64)
    names = {c["id"]: c["name"] for c in json.loads((scene / "info_semantic.json").read_text())["classes"]}
    best = None
    for i in np.unique(inst[inst > 0]):
        mask = inst == i
        name = names.get(int(np.bincount(cls[mask]).argmax()), "?")
        if name not in ("floor", "ceiling") and (best is None or mask.sum() > best[0].sum()):
            best = (mask, name)
    assert best is not None
    mask, name = best
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]  # the image border counts as outside
    y, x = np.unravel_index(int(depth.argmax()), depth.shape)
    return mask, (int(y), int(x)), name


# ------------------------------------------------------------------------------------------------------- test
def test_select_on_a_known_object_in_a_real_browser(viewer_url, browser, room48, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    start = time.monotonic()
    shot = tmp_path / "failure.png"
    gt, (y, x), name = _largest_object(room48)
    h, w = gt.shape
    driver = browser
    driver.get(viewer_url)
    _wait(driver, lambda: "Select (then click the scene)" in _text(driver), 90, "the panel", shot)
    _wait(driver, lambda: "Connected" in _text(driver), 60, "the websocket", shot)
    _fit_canvas_aspect(driver, w / h)
    _press(driver, "Hide Train Cams")
    _press(driver, "Go to label view")
    _wait(driver, lambda: "Camera at training view 0" in _text(driver), 30, "the camera move", shot)
    full = re.compile(rf"Resolution: 128x({round(128 * h / w) - 1}|{round(128 * h / w)})px")
    _wait(driver, lambda: full.search(_text(driver)), 90, "a full-resolution render", shot)
    _stable_frame(driver, 90, shot)

    _press(driver, "Select (then click the scene)")
    _wait(driver, lambda: "Click on the scene to select" in _text(driver), 30, "the armed click", shot)
    _stable_frame(driver, 90, shot)  # the button's own re-render is done (it holds the train lock while it runs)
    canvas = _canvas(driver)
    cw, ch = canvas.rect["width"], canvas.rect["height"]
    ox, oy = (x + 0.5) / w * cw - cw / 2, (y + 0.5) / h * ch - ch / 2  # offsets from the canvas centre
    ActionChains(driver).move_to_element_with_offset(canvas, round(ox), round(oy)).click().perform()
    clicked = time.monotonic()

    # (a) the plugin's pointer callback ran: it writes the clicked 3D point into the panel
    _wait(driver, lambda: "Selected by resonance at" in _text(driver), 60, "the selection callback", shot)
    seen = {"status": time.monotonic() - clicked}
    _wait(driver, lambda: _input(driver, "Output type").get_attribute("value") == "selection_overlay", 60,
          "Output type = selection_overlay", shot)  # fmt: skip
    seen["overlay_chosen"] = time.monotonic() - clicked
    _stable_frame(driver, 90, shot)
    seen["settled"] = time.monotonic() - clicked  # includes the 0.5 s steps of the settle check
    screenshot = tmp_path / "viewer_select.png"
    driver.save_screenshot(str(screenshot))

    # (b) the `selection` output, as the browser shows it, covers the object's ground-truth mask
    _choose(driver, "Output type", "selection", shot)

    def binary(img: np.ndarray) -> bool:
        grey = img.mean(axis=-1)
        return float(((grey < 40) | (grey > 215)).mean()) > 0.9

    frame = _stable_frame(driver, 90, shot, binary)
    small = np.asarray(Image.fromarray(frame).convert("L").resize((w, h), Image.BOX)) > 127
    iou = float((small & gt).sum() / max(1, (small | gt).sum()))
    Image.fromarray(frame).save(tmp_path / "selection_frame.png")
    # the marker (drawn over the click, so the clicked pixel itself reads as unselected) and the pixels around it
    fy, fx = (y + 0.5) / h * frame.shape[0], (x + 0.5) / w * frame.shape[1]
    yy, xx = np.mgrid[: frame.shape[0], : frame.shape[1]]
    red = (frame[..., 0] > 150) & (frame[..., 1] < 110) & (frame[..., 2] < 110)
    assert int((red & ((yy - fy) ** 2 + (xx - fx) ** 2 < 20**2)).sum()) >= 20, "no marker at the clicked point"
    ring = small[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2]
    assert int(ring.sum()) - int(small[y, x]) >= 6, f"the pixels around the click are not selected: {ring}"
    assert iou >= IOU_BOUND, f"selection vs the {name} mask: IoU {iou:.2f} < {IOU_BOUND} ({tmp_path})"

    # (c) the screenshot
    with Image.open(screenshot) as img:
        assert img.size[0] >= 800 and img.size[1] >= 400
    if os.environ.get("JACOBINERF_UPDATE_DOCS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in seen.items())
    print(f"browser test: {name} IoU {iou:.3f}; after the click: {timings}; {time.monotonic() - start:.1f} s in all")
