"""User-Agent → (device_type, browser, os), cached.

Parsing uses the ``ua-parser`` package (the maintained uap-core regex list) with its native
``ua-parser-rs`` accelerator (the ``regex`` extra).  A parse still costs ~0.1 ms, so results
are kept in an LRU cache keyed by the exact User-Agent string: real traffic has few distinct
UAs, and the cache makes the common case a dict lookup.

``device_type`` is one of ``desktop``, ``mobile``, ``tablet``, ``bot``, ``other`` (an empty
or unparseable User-Agent).
"""

from __future__ import annotations

import functools
import re

import ua_parser

_TABLET_FAMILIES = re.compile(r"ipad|tablet|kindle|silk|playbook|nexus (7|9|10)|sm-t|sm-x|\btab\b", re.I)
_TABLET_BRAND = re.compile(r"tablet", re.I)
_MOBILE_UA = re.compile(r"mobile|iphone|ipod|android.*mobile|windows phone|blackberry|opera mini", re.I)
_ANDROID_UA = re.compile(r"android", re.I)


@functools.lru_cache(maxsize=8192)
def parse_device(user_agent: str) -> tuple[str, str, str]:
    """(device_type, browser family, os family) of a User-Agent string."""
    if not user_agent:
        return ("other", "", "")
    result = ua_parser.parse(user_agent)
    browser = result.user_agent.family if result.user_agent else ""
    os_name = result.os.family if result.os else ""
    device = result.device
    if device is not None and device.family == "Spider":
        return ("bot", browser, os_name)
    fam = device.family if device else ""
    brand = (device.brand or "") if device else ""
    if _TABLET_FAMILIES.search(fam) or _TABLET_BRAND.search(brand):
        dtype = "tablet"
    elif _MOBILE_UA.search(user_agent):
        dtype = "mobile"
    elif _ANDROID_UA.search(user_agent):  # Android without "Mobile" is a tablet by convention
        dtype = "tablet"
    elif os_name in ("", "Other"):  # every real desktop browser names its OS
        dtype = "other"
    else:
        dtype = "desktop"
    return (dtype, "" if browser == "Other" else browser, "" if os_name == "Other" else os_name)


def warm_up() -> None:
    """Load the parser's regex list now (about a second), not on the first request."""
    parse_device("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36")
