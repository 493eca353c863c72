"""The HTML report in a real browser: headless Chromium, driven over the DevTools protocol.

No driver package is needed: Chromium speaks the Chrome DevTools Protocol over
a pair of pipes (``--remote-debugging-pipe``: it reads commands on fd 3 and
writes replies on fd 4, each message JSON ending in a NUL byte), so the
standard library is the whole client.

Checks, on a desktop and on a phone-sized viewport: every ``<img>`` decoded
(``naturalWidth > 0``), no console error or exception, no request other than
the file itself and its ``data:`` images, a click on a layer in the navigation
brings that layer's section into view, and the page is no wider than the
viewport. Screenshots go to the test's tmp dir, and to ``$MULTIVIZ_ARTIFACTS``
when it is set.

Chromium comes from Debian's ``chromium`` package. When ``/usr/bin/chromium``
is missing the test installs it only if ``MULTIVIZ_INSTALL_BROWSER=1`` (CI
sets it), and skips otherwise.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.torch

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
]
VIEWPORTS = {"desktop": (1280, 900, 1, False), "phone": (390, 844, 2, True)}


def _chromium() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("MULTIVIZ_INSTALL_BROWSER") == "1":
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, timeout=900
        )
        return CHROMIUM
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium package "
        "(apt-get install chromium), or set MULTIVIZ_INSTALL_BROWSER=1 to let the test do it"
    )


class Browser:
    """A headless Chromium and one page, over the DevTools pipe."""

    def __init__(self, binary: str, profile: Path, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._buffer = b""
        cmd_read, self._cmd_write = os.pipe()  # we write commands, Chromium reads fd 3
        self._reply_read, reply_write = os.pipe()  # Chromium writes fd 4, we read

        def child_fds() -> None:
            os.dup2(cmd_read, 3)
            os.dup2(reply_write, 4)

        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child_fds,
            pass_fds=(3, 4),
        )
        os.close(cmd_read)
        os.close(reply_write)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.page(f"{domain}.enable")

    # ---- protocol

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._cmd_write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.call(method, session=self.session, **params)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._reply_read], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._reply_read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def wait_event(self, method: str, seen: int = 0) -> dict[str, Any]:
        """The first event ``method`` at index >= ``seen`` of :attr:`events`."""
        deadline = time.monotonic() + self.timeout
        while True:
            for event in self.events[seen:]:
                if event["method"] == method:
                    return event
            message = self._read(deadline)
            if "method" in message:
                self.events.append(message)

    # ---- page helpers

    def open(self, url: str, width: int, height: int, scale: float, mobile: bool) -> None:
        self.page(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=scale,
            mobile=mobile,
        )
        seen = len(self.events)
        self.page("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", seen)

    def js(self, expression: str) -> Any:
        result = self.page(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click at the centre of the element (scrolled into view first)."""
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            self.page("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path) -> Path:
        data = self.page("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._cmd_write)
        os.close(self._reply_read)


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of the built-in model, made through the command line."""
    from PIL import Image

    import multiviz as mv
    from multiviz.cli import main

    folder = tmp_path_factory.mktemp("report")
    image = folder / "shape.png"
    pixels = np.moveaxis(mv.sample_image(seed=1), 0, -1)
    Image.fromarray(np.rint(pixels * 255).astype(np.uint8)).save(image)
    out = folder / "report.html"
    assert main(["report", "builtin", str(image), "-o", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    binary = _chromium()
    chrome = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield chrome
    chrome.close()


def _artifact(path: Path) -> None:
    target = os.environ.get("MULTIVIZ_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_report_renders_and_navigates(
    browser: Browser, report_file: Path, tmp_path: Path, viewport: str
) -> None:
    width, height, scale, mobile = VIEWPORTS[viewport]
    seen = len(browser.events)
    browser.open(report_file.as_uri(), width, height, scale, mobile)

    # every image decoded: data URIs that Chromium could not decode have naturalWidth 0
    images = browser.js(
        "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(images) >= 2 + 2 * 3  # input, CAM, and per conv layer a grid and a mean map
    broken = [alt for alt, complete, w, h in images if not (complete and w > 0 and h > 0)]
    assert broken == []

    # the page fits the viewport: nothing forces sideways scrolling
    overflow = browser.js("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"page is {overflow}px wider than the {viewport} viewport"

    # a click on a layer in the navigation brings its section into view
    target, name = browser.js(
        "(() => { const a = Array.from(document.querySelectorAll('nav a[href^=\"#layer-\"]')).pop();"
        " return [a.getAttribute('href'), a.textContent.trim()]; })()"
    )
    assert target and target.startswith("#layer-")
    browser.js("window.scrollTo(0, 0)")
    browser.click(f'nav a[href="{target}"]')
    state: list[Any] = []
    for _ in range(50):  # smooth scrolling takes a few frames
        time.sleep(0.1)
        state = browser.js(
            f"(() => {{ const s = document.querySelector({json.dumps(target)});"
            " const bottom = window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 1;"
            " return [location.hash, s.getBoundingClientRect().top, window.scrollY, window.innerHeight,"
            " bottom, document.querySelector(':target') === s]; })()"
        )
        hash_, top, scroll_y, inner, at_bottom, is_target = state
        # at the top of the viewport, or as high as the page can bring it (the last section)
        if (
            hash_ == target
            and is_target
            and (abs(top) < 40 or (at_bottom and 0 <= top < inner / 2))
        ):
            break
    else:
        pytest.fail(
            f"after clicking {target}: hash, top, scrollY, height, at bottom, :target = {state}"
        )
    assert scroll_y > 0, "the page did not scroll"
    heading = browser.js(f"document.querySelector({json.dumps(target)} + ' h2').textContent")
    assert heading.strip() == name

    shot = browser.screenshot(tmp_path / f"report-{viewport}-layer.png")
    browser.js("window.scrollTo({top: 0, behavior: 'instant'})")
    time.sleep(0.2)
    top_shot = browser.screenshot(tmp_path / f"report-{viewport}.png")
    for path in (top_shot, shot):
        assert path.stat().st_size > 10_000
        _artifact(path)

    # no console errors, no exceptions, nothing fetched but the file and its data: images
    events = browser.events[seen:]
    errors = [
        e["params"] for e in events
        if e["method"] == "Runtime.exceptionThrown"
        or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
        or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]  # fmt: skip
    assert errors == []
    urls = [
        e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"
    ]
    external = [u for u in urls if not (u.startswith("data:") or u == report_file.as_uri())]
    assert external == []
