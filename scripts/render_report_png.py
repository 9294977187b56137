#!/usr/bin/env python3
"""Render a promptopt HTML report to a full-page PNG in headless Chromium; check that the page makes no request.

    python scripts/render_report_png.py REPORT.html OUT.png [--width 1280]

Needs Debian's chromium (``apt-get install -y chromium``); standard library only. Chromium runs headless with a
fresh profile and no background services, driven over the DevTools pipe (``--remote-debugging-pipe``): load the
page, measure it, screenshot the whole of it. Three checks, any failing exits 1:

1. static: the page declares ``Content-Security-Policy: default-src 'none'``, holds no ``<script>`` and no
   ``http(s)://`` or ``//`` URL in a ``src``/``href``/``url()``/``@import``;
2. DevTools: ``Network.requestWillBeSent`` reports no request other than the ``file://`` page itself;
3. net log (``--log-net-log``): no network request whose initiator is the page. Chromium's own background requests
   (initiator "not an origin": component updater, clock, account check) are listed but are not the page's.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
         "--mute-audio", "--remote-debugging-pipe"]  # fmt: skip
LOCAL = ("file:", "data:", "about:", "chrome:", "chrome-error:")


def static_check(text: str) -> list[str]:
    problems = []
    if not re.search(r"""<meta http-equiv="Content-Security-Policy" content="default-src 'none';""", text):
        problems.append("no Content-Security-Policy meta tag with default-src 'none'")
    if re.search(r"<script", text, re.I):
        problems.append("a <script> element")
    pattern = r"""(?:\b(?:src|href|xlink:href|action|poster|data|srcset)\s*=\s*["']?\s*|url\(\s*["']?|@import\s+["']?)((?:https?:)?//[^"')\s>]*)"""
    problems += [f"external URL {m.group(1)!r}" for m in re.finditer(pattern, text, re.I)]
    return problems


class DevTools:
    """The Chrome DevTools protocol over ``--remote-debugging-pipe``: JSON messages ending in NUL on fds 3 and 4."""

    def __init__(self, command: list[str], log_path: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child():  # chromium reads commands on fd 3 and writes replies on fd 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     preexec_fn=child, close_fds=False)  # fmt: skip
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._id = 0
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - it is going away either way
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def netlog_requests(path: Path) -> tuple[list[str], list[str]]:
    """(requests initiated by the page, Chromium's own background requests) from a net-log file."""
    raw = path.read_text(encoding="utf-8").rstrip().rstrip(",")
    try:
        log = json.loads(raw)
    except json.JSONDecodeError:  # Chromium may stop before closing the events array
        log = json.loads(raw + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    page, browser = [], []
    for event in log.get("events", []):
        params = event.get("params") or {}
        if event.get("type") != start_job or "url" not in params or params["url"].startswith(LOCAL):
            continue
        (browser if params.get("initiator") == "not an origin" else page).append(params["url"].split("?")[0])
    return sorted(set(page)), sorted(set(browser))


def render(html: Path, png: Path, width: int, browser: str) -> int:
    problems = static_check(html.read_text(encoding="utf-8"))
    if problems:
        print("static check failed: " + "; ".join(problems), file=sys.stderr)
        return 1
    print("static check: CSP default-src 'none', no script, no external URL")
    profile = Path(tempfile.mkdtemp(prefix="promptopt-chromium-"))
    netlog = profile / "netlog.json"
    page_url = html.resolve().as_uri()
    command = [browser, *FLAGS, f"--user-data-dir={profile / 'user-data'}", f"--log-net-log={netlog}",
               "--net-log-capture-mode=Default", f"--window-size={width},900", "about:blank"]  # fmt: skip
    tools = DevTools(command, profile / "chromium.log")
    try:
        target = tools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Network.enable", "Page.enable"):
            tools.call(method, session=session)
        metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}
        tools.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
        tools.call("Page.navigate", {"url": page_url}, session=session)
        tools.wait_for("Page.loadEventFired")
        size = tools.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        height = int(size["height"]) + 1
        tools.call("Emulation.setDeviceMetricsOverride", {**metrics, "height": height}, session=session)
        shot = tools.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
        png.write_bytes(base64.b64decode(shot["data"]))
        requested = sorted({e["params"]["request"]["url"] for e in tools.events
                            if e.get("method") == "Network.requestWillBeSent"})  # fmt: skip
    finally:
        tools.close()
    try:
        page_requests, background = netlog_requests(netlog)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    outside = [u for u in requested if u != page_url and not u.startswith(("data:", "about:"))]
    if outside or page_requests:
        print(f"network check failed: the page requested {sorted(set(outside + page_requests))}", file=sys.stderr)
        return 1
    print(f"network check: DevTools saw {len(requested)} request(s), all the page itself ({', '.join(requested)}); "
          f"net log: no request initiated by the page")  # fmt: skip
    if background:
        print(f"  (Chromium's own background requests, not the page's: {', '.join(background)})")
    print(f"written: {png} ({width}x{height} CSS pixels)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--browser", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args(argv)
    if not args.browser:
        print("chromium not found: apt-get update && apt-get install -y chromium", file=sys.stderr)
        return 2
    return render(args.html, args.png, args.width, args.browser)


if __name__ == "__main__":
    sys.exit(main())
