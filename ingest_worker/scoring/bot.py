"""What a User-Agent says about automation (cached per User-Agent string).

* ``crawler_ua`` — the UA matches the maintained pattern list of the ``crawler-user-agents``
  package (1,500+ self-declared crawlers, HTTP libraries and tools; compiled once by the
  package, see ``crawleruseragents.is_crawler``);
* ``automation_ua`` — a headless or automation marker (HeadlessChrome, PhantomJS, Selenium,
  WebDriver, Puppeteer, Playwright, Electron, ...);
* ``empty_ua`` — no User-Agent at all.
"""

from __future__ import annotations

import functools
import re

import crawleruseragents

_AUTOMATION = re.compile(
    r"headless|phantomjs|selenium|webdriver|puppeteer|playwright|electron/|slimerjs|htmlunit|nightmare|casperjs|"
    r"lighthouse|chrome-lighthouse|zombie\.js|splash",
    re.I,
)

CRAWLER = 1
AUTOMATION = 2
EMPTY = 4


@functools.lru_cache(maxsize=16384)
def ua_flags(user_agent: str) -> int:
    """Bit set of CRAWLER / AUTOMATION / EMPTY for a User-Agent."""
    if not user_agent.strip():
        return EMPTY
    flags = 0
    if crawleruseragents.is_crawler(user_agent):
        flags |= CRAWLER
    if _AUTOMATION.search(user_agent):
        flags |= AUTOMATION
    return flags


def warm_up() -> None:
    """Compile the crawler patterns now rather than on the first request."""
    ua_flags("Mozilla/5.0 (warm-up)")
