"""Real browser visits through the SDK: headless Chromium, driven by Playwright.

``make demo`` calls :func:`drive_browser_visits` to put a few visits into the lake the way a
customer's page would: a shop page served on the site's own domain loads ``/sdk.js`` from
its tracking hostname, and the SDK sends to ``/v1/collect`` there.  Both names are mapped
to loopback ports with Chromium's ``--host-resolver-rules``, so the worker sees the real
``Host`` and ``Origin`` headers.  The browser tests reuse :class:`PageServer`,
:func:`find_chromium` and :func:`launch_args`.
"""

from __future__ import annotations

import functools
import io
import os
import random
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM_ENV = "CLICKSTREAM_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
BASE_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def find_chromium() -> str | None:
    """The Chromium to drive: ``$CLICKSTREAM_CHROMIUM``, Debian's /usr/bin/chromium, or on PATH."""
    for candidate in (os.environ.get(CHROMIUM_ENV), DEFAULT_CHROMIUM, shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def launch_args(hosts: dict[str, int], *, secure_origins: bool = True) -> list[str]:
    """Chromium flags mapping each hostname to a loopback port.

    Plain-http origins other than localhost are not secure contexts: ``crypto.subtle`` (used
    by ``clickstream.identify``) is missing there and ``Secure`` cookies are refused.  With
    ``secure_origins`` the mapped http origins are treated as secure, as https would be in
    production.
    """
    rules = ",".join(f"MAP {host} 127.0.0.1:{port}" for host, port in hosts.items())
    args = [*BASE_ARGS, f"--host-resolver-rules={rules}"]
    if secure_origins:
        args.append("--unsafely-treat-insecure-origin-as-secure=" + ",".join(f"http://{h}" for h in hosts))
    return args


class _PageHandler(SimpleHTTPRequestHandler):
    substitutions: dict[str, str] = {}

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet
        pass

    def send_head(self):  # type: ignore[override]
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if path.suffix != ".html" or not path.is_file():
            return super().send_head()
        text = path.read_text(encoding="utf-8")
        for key, value in self.substitutions.items():
            text = text.replace("{{" + key + "}}", value)
        body = text.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        return io.BytesIO(body)


class PageServer:
    """The customer's web site: static pages from a directory on a loopback port.

    ``{{NAME}}`` in an .html file is replaced by ``substitutions[NAME]`` (e.g. the tracking
    origin the page loads the SDK from).  Any path without a file falls back to
    ``fallback`` (a single-page app's deep links).
    """

    def __init__(self, directory: str | os.PathLike[str], substitutions: dict[str, str] | None = None,
                 fallback: str | None = None):
        directory = str(directory)
        subs = dict(substitutions or {})

        class Handler(_PageHandler):
            substitutions = subs

            def translate_path(self, path: str) -> str:  # noqa: D401
                local = super().translate_path(path)
                if fallback and not os.path.exists(local):
                    return os.path.join(directory, fallback)
                return local

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=directory))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="page-server", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> PageServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


DEMO_PAGE = "sdk-demo.html"


def demo_page_substitutions(tracking_origin: str, *, shop_name: str = "Demo shop",
                            flush_ms: int = 500) -> dict[str, str]:
    """What ``static/sdk-demo.html`` needs filled in: where it loads the SDK from, the shop's
    name (in its titles) and the SDK's batching delay."""
    return {"TRACKING_ORIGIN": tracking_origin, "SHOP_NAME": shop_name, "FLUSH_MS": str(flush_ms)}


@contextmanager
def _demo_pages(tracking_origin: str) -> Iterator[PageServer]:
    with resources.as_file(resources.files("ingest_worker").joinpath("static")) as static:
        server = PageServer(static, demo_page_substitutions(tracking_origin), fallback=DEMO_PAGE)
        try:
            yield server
        finally:
            server.close()


# Each demo visit poses as a different visitor: another device (User-Agent) on another network
# (X-Forwarded-For from the 203.0.113.0/24 documentation range).  Without this every visit
# from this one headless browser would be the same cookieless visitor (the worker's keyed
# hash of UA + IP), and "HeadlessChrome" would rightly score as a bot.
DEMO_DEVICES = [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", {"width": 1440, "height": 900}),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/18.1 Safari/605.1.15", {"width": 1280, "height": 800}),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/18.1 Mobile/15E148 Safari/604.1", {"width": 390, "height": 844}),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Mobile Safari/537.36", {"width": 412, "height": 915}),
]


def _visit(context, page_url: str, rng: random.Random, n: int) -> bool:
    page = context.new_page()
    try:
        page.goto(page_url, wait_until="load", timeout=15_000)
        page.wait_for_function("window.clickstream && window.clickstream.version", timeout=10_000)
        for _ in range(rng.randint(0, 3)):
            page.click("#buy")
            page.wait_for_timeout(rng.randint(100, 400))
        if rng.random() < 0.3:  # a frustrated visitor: a rage-click burst on a dead control
            box = page.locator("#broken").bounding_box()
            for _ in range(rng.randint(3, 5)):
                page.mouse.click(box["x"] + 10, box["y"] + 8)
                page.wait_for_timeout(80)
        page.mouse.wheel(0, rng.randint(300, 3000))
        page.wait_for_timeout(rng.randint(200, 600))
        if rng.random() < 0.6:  # a single-page-app navigation to a product
            page.click("#spa-link")
            page.wait_for_timeout(300)
        if rng.random() < 0.4:
            page.evaluate("(n) => clickstream.identify(`demo-visitor-${n}@example.com`)", n)
        if rng.random() < 0.2:
            page.evaluate("(v) => clickstream.track('purchase', {value: v, currency: 'EUR'})", rng.randint(10, 200))
        page.evaluate("(n) => clickstream.track('demo_visit', {visit: n})", n)
        page.wait_for_timeout(1300)  # clicks are held 1 s to tell dead clicks apart
        page.evaluate("clickstream.flush()")
        try:
            page.wait_for_function("window.__scores && window.__scores.length > 0", timeout=5_000)
            got_scores = True
        except Exception:  # noqa: BLE001 - the visit still counts: its events were sent
            got_scores = False
        page.goto("about:blank")  # pagehide: the engagement event leaves by beacon
        page.wait_for_timeout(200)
        return got_scores
    finally:
        page.close()


def drive_browser_visits(base_url: str, hostname: str, n_visits: int, *, page_host: str | None = None,
                         seed: int = 7, log: Callable[[str], None] = print) -> int:
    """Drive ``n_visits`` visits (each a new visitor) through a real page with the SDK.

    ``base_url`` is the running ``clickstream serve`` (e.g. ``http://127.0.0.1:8787``),
    ``hostname`` a tracking hostname registered for the site, ``page_host`` the site's own
    domain the page is served on (default: ``hostname`` without its first label, e.g.
    ``t.shop.example`` → ``shop.example``; it must be the site's registered domain for CORS).
    Returns the number of visits completed; 0, with a message, when Chromium or Playwright is
    missing.
    """
    chromium = find_chromium()
    if chromium is None:
        log(f"browser visits skipped: no Chromium at {DEFAULT_CHROMIUM} (scripts/ensure_chromium.sh installs it)")
        return 0
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        log("browser visits skipped: the python 'playwright' package is not installed (pip install -e '.[dev]')")
        return 0
    port = urlsplit(base_url).port or 80
    page_host = page_host or (hostname.split(".", 1)[1] if hostname.count(".") >= 2 else "www." + hostname)
    rng = random.Random(seed)
    done = with_scores = 0
    with _demo_pages(f"http://{hostname}") as pages, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=launch_args({hostname: port, page_host: pages.port}))
        try:
            for n in range(n_visits):
                ua, viewport = DEMO_DEVICES[n % len(DEMO_DEVICES)]
                context = browser.new_context(user_agent=ua, viewport=viewport, extra_http_headers={
                    "X-Forwarded-For": f"203.0.113.{rng.randint(1, 254)}"})
                try:
                    with_scores += _visit(context, f"http://{page_host}/shop?utm_source=demo&visit={n}", rng, n)
                    done += 1
                except Exception as e:  # noqa: BLE001 - one failed visit does not end the demo
                    log(f"browser visit {n} failed: {e}")
                finally:
                    context.close()
        finally:
            browser.close()
    log(f"browser visits: {done}/{n_visits} through the SDK on http://{page_host} → {hostname}, "
        f"{with_scores} got scores back in the page")
    return done


def main(argv: list[str] | None = None) -> int:
    """``python -m ingest_worker.sdk_demo --url http://127.0.0.1:8787 --hostname t.shop.example``"""
    import argparse

    ap = argparse.ArgumentParser(description=drive_browser_visits.__doc__)
    ap.add_argument("--url", required=True, help="the running clickstream serve, e.g. http://127.0.0.1:8787")
    ap.add_argument("--hostname", required=True, help="a tracking hostname registered for the site")
    ap.add_argument("--visits", type=int, default=3)
    ap.add_argument("--page-host", default=None, help="the site's domain the page is served on")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    drive_browser_visits(args.url, args.hostname, args.visits, page_host=args.page_host, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
