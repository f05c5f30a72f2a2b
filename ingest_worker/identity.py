"""Who is this visitor: first-party cookie, else SDK id, else a cookieless keyed hash.

Order (DESIGN.md, tracking contract):

1. the first-party cookie's visitor id (``_cs_vid``, set by the server on an earlier response);
2. else the SDK-supplied ``visitor_id`` of the event;
3. else a **keyed hash** of (site, User-Agent, IP) — keyed BLAKE2b-128 — under a salt that
   rotates every UTC day (``HMAC-SHA256(secret, "salt:" + day)``), so the id cannot be
   linked across days nor recomputed without the server secret.  Yesterday's salt still matches: when the store already holds
   a state for yesterday's hash (and none for today's), yesterday's id is kept, so a visit
   that crosses midnight stays one visitor and one session.

When the site requires consent (``consent_required``) and the event does not carry
``consent: true``, neither cookie nor SDK id is read or written: the visitor id is the keyed
hash and ``set_cookie`` is False.  Otherwise ``set_cookie`` is True: the response (re)sets the
first-party cookie with this id (rolling ``cookie_max_age``), so the keyed hash of a first
visit becomes the visitor's lasting cookie id.

Visitor ids look like ``v_`` + 32 lower-case hex digits (128 bits).  A cookie or SDK
id that already has this shape is used as it is; any other SDK id is mapped into it by
HMAC-SHA256(secret, site, id), so the same SDK id is always the same visitor of that site.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from clickstream_lake.control.config import SiteConfig
from ingest_worker.events import RequestInfo, TrackedEvent

DAY_MS = 86_400_000
VISITOR_ID = re.compile(r"v_[0-9a-f]{16,64}|v_[a-z2-7]{26}")
MAX_SDK_ID = 128


@dataclass(frozen=True, slots=True)
class Identity:
    visitor_id: str
    set_cookie: bool
    method: Literal["cookie", "sdk", "hash"]


def _id(digest: bytes) -> str:
    return digest[:16].hex()


class _SaltBox:
    """Daily salts derived from the secret, memoised (two live days per secret)."""

    def __init__(self) -> None:
        self._salts: dict[tuple[bytes, int], bytes] = {}
        self._lock = threading.Lock()

    def salt(self, secret: bytes, day: int) -> bytes:
        key = (secret, day)
        s = self._salts.get(key)
        if s is None:
            s = hmac.new(secret, f"salt:{day}".encode(), hashlib.sha256).digest()[:32]
            with self._lock:
                if len(self._salts) > 64:
                    self._salts.clear()
                self._salts[key] = s
        return s


_SALTS = _SaltBox()


def _keyed_hash(site_id: str, user_agent: str, ip: str, secret: bytes, day: int) -> str:
    msg = f"{site_id}\x00{user_agent}\x00{ip}".encode("utf-8", "surrogatepass")
    return "v_" + hashlib.blake2b(msg, key=_SALTS.salt(secret, day), digest_size=16).hexdigest()


HASH_CACHE_SIZE = 8192  # recent (site, UA, IP, day) ids: every event of a batch shares one
HASH_CACHE_MAX_UA = 512  # longer User-Agents are hashed each time (bounds the cache to a few MB)
_keyed_hash_cached = functools.lru_cache(maxsize=HASH_CACHE_SIZE)(_keyed_hash)


def keyed_hash(site_id: str, user_agent: str, ip: str, secret: bytes, day: int) -> str:
    """The cookieless visitor id of (site, UA, IP) on UTC day number ``day`` (a pure
    function of its arguments, remembered in a bounded LRU)."""
    if len(user_agent) > HASH_CACHE_MAX_UA:
        return _keyed_hash(site_id, user_agent, ip, secret, day)
    return _keyed_hash_cached(site_id, user_agent, ip, secret, day)


def sdk_visitor_id(site_id: str, raw: str, secret: bytes) -> str:
    """The visitor id for an SDK-supplied id ('' when unusable); a pure function of its
    arguments, remembered in a bounded LRU (a visitor's events all carry the same id)."""
    if len(raw) > SDK_CACHE_MAX_CHARS:
        return _sdk_visitor_id(site_id, raw, secret)
    return _sdk_visitor_id_cached(site_id, raw, secret)


def _sdk_visitor_id(site_id: str, raw: str, secret: bytes) -> str:
    raw = raw.strip()
    if not raw or len(raw) > MAX_SDK_ID:
        return ""
    if VISITOR_ID.fullmatch(raw):
        return raw
    msg = f"sdk\x00{site_id}\x00{raw}".encode("utf-8", "surrogatepass")
    return "v_" + _id(hmac.new(secret, msg, hashlib.sha256).digest())


SDK_CACHE_MAX_CHARS = 256  # longer raw ids (unusable once stripped past 128) are not remembered
_sdk_visitor_id_cached = functools.lru_cache(maxsize=HASH_CACHE_SIZE)(_sdk_visitor_id)


def resolve_visitor(
    event: TrackedEvent,
    config: SiteConfig,
    secret: bytes,
    now_ms: int,
    *,
    known: Callable[[str], bool] | None = None,
) -> Identity:
    """The event's visitor (see module doc).  ``known(visitor_id)`` tells whether the
    session store holds a live state for an id; it lets yesterday's keyed hash win."""
    req = event.request
    site = req.site_id if req else config.site_id
    allowed = not config.consent_required or event.consent is True
    if allowed:
        ident = _first_party(site, req.cookie_visitor_id if req else "", event.sdk_visitor_id, secret)
        if ident is not None:
            return ident
    ua = req.user_agent if req else ""
    ip = req.ip if req else ""
    day = now_ms // DAY_MS
    today = keyed_hash(site, ua, ip, secret, day)
    if known is not None and not known(today):
        yesterday = keyed_hash(site, ua, ip, secret, day - 1)
        if known(yesterday):
            return _hash_identity(yesterday, allowed)
    return _hash_identity(today, allowed)


def routing_id(obj: object, req: RequestInfo, config: SiteConfig, secret: bytes) -> str:
    """The visitor id :func:`resolve_visitor` will most likely give the raw (not yet
    validated) event object ``obj`` of a request: what ``clickstream serve --shards N``
    routes an event by, before a shard validates it.

    The same precedence on the raw fields (cookie, else the SDK ``visitor_id``, else today's
    keyed hash; consent per event), without the look-up of yesterday's hash, which needs the
    visitor's shard.  For a valid event it equals the resolved id except when yesterday's
    keyed hash wins at midnight (tests/test_shards.py checks it on arbitrary events)."""
    site = req.site_id
    get = obj.get if type(obj) is dict else None
    allowed = not config.consent_required or (get is not None and get("consent") is True)
    if allowed:
        raw = get("visitor_id") if get is not None else None
        ident = _first_party(site, req.cookie_visitor_id, raw if type(raw) is str else "", secret)
        if ident is not None:
            return ident.visitor_id
    return keyed_hash(site, req.user_agent, req.ip, secret, req.received_ms // DAY_MS)


def _first_party(site_id: str, cookie: str, sdk_raw: str, secret: bytes) -> Identity | None:
    """The identity a consenting visitor has before any keyed hash: its first-party cookie,
    else its SDK id; None when it brings neither (usable)."""
    if cookie and VISITOR_ID.fullmatch(cookie):
        return _cookie_identity(cookie)
    if sdk_raw:
        vid = sdk_visitor_id(site_id, sdk_raw, secret)
        if vid:
            return _sdk_identity(vid)
    return None


@functools.lru_cache(maxsize=HASH_CACHE_SIZE)
def _cookie_identity(visitor_id: str) -> Identity:
    """Identity(visitor_id, True, "cookie"), shared (frozen)."""
    return Identity(visitor_id, True, "cookie")


@functools.lru_cache(maxsize=HASH_CACHE_SIZE)
def _sdk_identity(visitor_id: str) -> Identity:
    """Identity(visitor_id, True, "sdk"), shared (frozen)."""
    return Identity(visitor_id, True, "sdk")


@functools.lru_cache(maxsize=HASH_CACHE_SIZE)
def _hash_identity(visitor_id: str, set_cookie: bool) -> Identity:
    """The (frozen, so shareable) Identity of a keyed-hash visitor: building a frozen
    dataclass costs more than the cached hash that names it."""
    return Identity(visitor_id, set_cookie, "hash")


def identity_signals(event: TrackedEvent) -> dict[str, str]:
    """The identity signals of blob7: cookie id, hashed e-mail, click ids ('' when absent)."""
    req = event.request
    return {
        "cookie": req.cookie_visitor_id if req else "",
        "hem": event.hem,
        "gclid": event.gclid,
        "fbclid": event.fbclid,
        "msclkid": event.msclkid,
    }
