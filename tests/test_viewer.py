"""The 360-degree viewer, opened from file:// in headless Chromium (Debian's ``chromium``)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from panosamic.cli import main
from tests.conftest import model_flags

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VIEWPORT = {"width": 1100, "height": 640}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A segment run of two panoramas with point clouds, masks and the viewer."""
    from tests.test_segment_capture import PAIRING, write_room

    root = tmp_path_factory.mktemp("viewer")
    for i in range(2):
        write_room(root / "cap", f"p{i}", seed=60 + i)
    out = root / "out"
    args = ["segment", str(root / "cap" / "rgb"), *PAIRING, *model_flags(root / "m", "tiny-instances"),
            "--depth-scale", "1000", "--depth-max", "8",
            "--quiet", "--workers", "0", "--out", str(out), "--save", "labels,masks,pointcloud,viewer"]  # fmt: skip
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.fail("the viewer tests need Debian's chromium: apt-get install -y chromium")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
        )
        yield browser
        browser.close()


class Page:
    """The viewer page with its console errors collected."""

    def __init__(self, browser, index: Path) -> None:
        self.errors: list[str] = []
        self.page = browser.new_page(viewport=VIEWPORT)
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(index.resolve().as_uri())
        self.ready()

    def ready(self, panorama: int | None = None) -> None:
        condition = "document.body.dataset.state === 'ready'"
        if panorama is not None:
            condition += f" && document.body.dataset.panorama === '{panorama}'"
        self.page.wait_for_function(condition, timeout=30_000)
        self.page.wait_for_timeout(700)  # the sphere fades new pictures in

    def shot(self, selector: str) -> np.ndarray:
        png = self.page.locator(selector).screenshot()
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)

    def centre(self, selector: str = "#sphere") -> tuple[float, float]:
        box = self.page.locator(selector).bounding_box()
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def centre_classes(run_dir: Path, panorama: str) -> set[int]:
    """The classes around the centre pixel of a panorama's labels (where the view starts)."""
    labels = np.asarray(Image.open(run_dir / panorama / "labels.png"))
    h, w = labels.shape
    return set(np.unique(labels[h // 2 - 2 : h // 2 + 3, w // 2 - 2 : w // 2 + 3]).tolist())


def class_names(run_dir: Path) -> list[str]:
    return json.loads((run_dir / "run_summary.json").read_text())["class_names"]


def test_the_page_shows_the_panorama_and_its_classes(browser, run_dir):
    page = Page(browser, run_dir / "viewer" / "index.html")
    view = page.shot("#sphere")
    assert view.std() > 10  # the panorama, not a blank canvas
    assert page.page.locator("#legend .class").count() == len(class_names(run_dir))
    # the tooltip over the centre names the class of the panorama's centre pixel
    x, y = page.centre()
    page.page.mouse.move(x, y)
    tooltip = page.page.locator("#tooltip")
    tooltip.wait_for(state="visible")
    names = class_names(run_dir)
    expected = {names[k] for k in centre_classes(run_dir, "p0_rgb")}
    assert tooltip.inner_text().split(" · ")[0] in expected
    page.page.mouse.move(1, 1)
    # turning the centre's class off changes the pixels there (overlay gone), on again restores
    k = next(iter(centre_classes(run_dir, "p0_rgb")))
    before = page.shot("#sphere")
    toggle = page.page.locator(f"#legend .class[data-class='{names[k]}'] input")
    toggle.uncheck()
    page.ready()
    after = page.shot("#sphere")
    h, w = before.shape[:2]
    middle = (slice(h // 2 - 3, h // 2 + 4), slice(w // 2 - 3, w // 2 + 4))
    assert np.abs(after[middle] - before[middle]).mean() > 8
    toggle.check()
    page.ready()
    assert np.abs(page.shot("#sphere")[middle] - before[middle]).mean() < 3
    assert page.errors == []


def test_panoramas_load_lazily_and_switch(browser, run_dir):
    page = Page(browser, run_dir / "viewer" / "index.html")
    loaded = "[...document.scripts].filter(s => s.src.includes('/data/')).length"
    assert page.page.evaluate(loaded) == 1  # only the panorama on show
    first = page.shot("#sphere")
    page.page.locator("#panoramas li[data-index='1']").click()
    page.ready(panorama=1)
    assert page.page.evaluate(loaded) == 2
    assert "current" in page.page.locator("#panoramas li[data-index='1']").get_attribute("class")
    assert np.abs(page.shot("#sphere") - first).mean() > 5
    assert page.errors == []


def test_the_cloud_view_renders(browser, run_dir):
    page = Page(browser, run_dir / "viewer" / "index.html")
    page.page.locator("#cloud-button").click()
    page.ready()
    cloud = page.shot("#cloud")
    background = np.array([0x20, 0x24, 0x28])
    drawn = np.abs(cloud - background).sum(-1) > 30
    assert 0.02 < drawn.mean() < 0.95  # points on the dark background
    page.page.select_option("#cloud-colours", "picture")
    page.ready()
    recoloured = np.abs(page.shot("#cloud") - cloud).sum(-1)
    assert recoloured[drawn].mean() > 20  # the same points in the picture's colours
    assert page.errors == []


def quadrant_run(run_dir: Path, folder: Path) -> Path:
    """A copy of the run whose first panorama's classes are its quadrants: 0 1 above, 2 3 below."""
    shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("viewer"))
    labels_path = folder / "p0_rgb" / "labels.png"
    h, w = np.asarray(Image.open(labels_path)).shape
    labels = np.zeros((h, w), np.uint8)
    labels[:, w // 2 :] += 1
    labels[h // 2 :] += 2
    Image.fromarray(labels).save(labels_path)
    return folder


def test_the_tooltip_names_the_class_under_the_pointer(browser, run_dir, tmp_path):
    run = quadrant_run(run_dir, tmp_path / "run")
    assert main(["view", str(run), "--no-open"]) == 0
    page = Page(browser, run / "viewer" / "index.html")
    names = class_names(run)
    x, y = page.centre()
    tooltip = page.page.locator("#tooltip")
    # the view starts at the picture's centre: right of it is the right half, above it the top
    for dx, dy, k in ((-60, -60, 0), (60, -60, 1), (-60, 60, 2), (60, 60, 3)):
        page.page.mouse.move(x + dx, y + dy)
        tooltip.wait_for(state="visible")
        page.page.wait_for_function(
            f"document.getElementById('tooltip').textContent.startsWith({json.dumps(names[k])})"
        )
        page.page.mouse.move(1, 1)
    assert page.errors == []


def data_image_width(script: Path) -> int:
    """The width of the picture a panorama's data script carries."""
    import base64

    text = script.read_text()
    data = json.loads(text[text.index(", ") + 2 : text.rindex(");")])
    encoded = data["image"].split(",", 1)[1]
    return Image.open(io.BytesIO(base64.b64decode(encoded))).width


def test_view_command_keeps_the_page_in_step_with_the_run(run_dir, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("viewer"))
    assert main(["view", str(copy), "--no-open", "--max-width", "64"]) == 0
    index = copy / "viewer" / "index.html"
    assert capsys.readouterr().out.strip() == str(index)
    for name in ("viewer.js", "photo-sphere-viewer.css", "run.js",
                 "licenses/three-0.185.1.LICENSE", "licenses/photo-sphere-viewer-5.15.1.LICENSE"):  # fmt: skip
        assert (index.parent / name).is_file(), name
    html = index.read_text()
    assert 'src="http' not in html and 'href="http' not in html  # nothing from the network
    scripts = sorted((index.parent / "data").glob("*.js"))
    assert len(scripts) == 2 and {data_image_width(s) for s in scripts} == {64}
    # other options: new scripts, the old ones gone
    assert main(["view", str(copy), "--no-open", "--max-width", "32"]) == 0
    again = sorted((index.parent / "data").glob("*.js"))
    assert len(again) == 2 and not set(again) & set(scripts)
    assert {data_image_width(s) for s in again} == {32}
    # a panorama without labels is left out, and said so
    (copy / "p1_rgb" / "labels.png").unlink()
    assert main(["view", str(copy), "--no-open", "--max-width", "32"]) == 0
    assert "left out p1_rgb: no labels.png" in capsys.readouterr().err
    listed = (index.parent / "run.js").read_text()
    assert '"p0_rgb"' in listed and '"p1_rgb"' not in listed
    assert len(list((index.parent / "data").glob("*.js"))) == 1


def test_segment_writes_the_viewer_data_from_memory_as_the_files_give_it(tmp_path, monkeypatch):
    from panosamic.viewer import page, write_viewer
    from tests.test_segment_capture import PAIRING, write_room

    write_room(tmp_path / "cap", "p0", seed=61)
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "cap" / "rgb"), *PAIRING, *model_flags(tmp_path / "m", "tiny-instances"),
            "--depth-scale", "1000", "--depth-max", "8",
            "--quiet", "--workers", "0", "--out", str(out), "--save", "labels,masks,pointcloud,viewer"]  # fmt: skip

    def from_files(*args, **kwargs):
        raise AssertionError("the run read its outputs back for the viewer")

    monkeypatch.setattr(page, "panorama_script", from_files)
    assert main(args) == 0
    monkeypatch.undo()
    assert json.loads((out / "p0_rgb" / "masks.json").read_text())  # instances are in the data
    (script,) = (out / "viewer" / "data").glob("*.js")
    from_memory = script.read_text()
    script.unlink()
    write_viewer(out)
    assert script.read_text() == from_memory


def test_viewer_data_that_fails_in_the_run_is_made_from_the_files_at_the_end(
    tmp_path, monkeypatch, capsys
):
    from panosamic.inference import outputs
    from tests.test_segment_capture import PAIRING, write_room

    write_room(tmp_path / "cap", "p0", seed=62)
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "cap" / "rgb"), *PAIRING, *model_flags(tmp_path / "m", "tiny-dual"),
            "--depth-scale", "1000", "--depth-max", "8", "--no-instances",
            "--quiet", "--workers", "0", "--out", str(out), "--save", "labels,viewer"]  # fmt: skip

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs, "write_panorama_data", full_disk)
    assert main(args) == 0  # the panorama's folder is complete: not a failure
    assert "viewer data of p0_rgb left to the end: [Errno 28]" in capsys.readouterr().err
    (script,) = (out / "viewer" / "data").glob("*.js")
    assert data_image_width(script) == 128
