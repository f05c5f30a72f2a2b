"""The behavioural scoring engine: identity → session → features → the 16 scores.

* :func:`score` — ``score(event, state) -> (scores, state)``: the one entry point the worker,
  the tests and the benchmark all call.  It is pure apart from the state it is given: it
  updates ``state`` **in place** and returns that same object (copying ~60 slots per event
  would double the cost; call ``state.copy()`` first if you need the old one), touches no
  global state (the LRU caches of UA / URL parsing only memoise pure functions), and the
  same events into the same state always give the same scores.  It also fills the event:
  session_id, session_number, device_type/browser/os, channel, click_count, bot_reasons,
  model_version and ``scores``.
* :class:`Scorer` — holds a :class:`~ingest_worker.sessions.SessionStore` and the identity
  secret; ``scorer.process(event, config)`` is what the worker calls per event.

Weights live in ``weights_v1.json`` beside this file, loaded once per process (the source
article's "model weights in worker global scope"); its ``model_version`` goes on every row.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from clickstream_lake.codec import SCORE_NAMES
from clickstream_lake.control.config import SiteConfig
from ingest_worker import device
from ingest_worker.device import parse_device
from ingest_worker.events import RequestInfo, TrackedEvent
from ingest_worker.identity import Identity, resolve_visitor
from ingest_worker.scoring import bot as bot_mod
from ingest_worker.scoring.bot import ua_flags
from ingest_worker.scoring.features import observe
from ingest_worker.scoring.formulas import build
from ingest_worker.sessions import SessionStore, VisitorState

__all__ = ["MODEL_VERSION", "SCORE_NAMES", "WEIGHTS", "Scorer", "load_weights", "score"]

WEIGHTS_FILE = "weights_v1.json"
SECRET_ENV = "CLICKSTREAM_ID_SECRET"
log = logging.getLogger(__name__)


def load_weights(name: str = WEIGHTS_FILE) -> dict[str, Any]:
    """The weights document shipped as package data (``ingest_worker/scoring/*.json``)."""
    text = resources.files(__package__).joinpath(name).read_text("utf-8")
    doc = json.loads(text)
    missing = [n for n in SCORE_NAMES if n not in doc]
    if missing or "model_version" not in doc:
        raise ValueError(f"weights file {name} lacks {missing or ['model_version']}")
    return doc


WEIGHTS: dict[str, Any] = load_weights()
MODEL_VERSION: str = WEIGHTS["model_version"]
_compute = build(WEIGHTS)
_ALL = frozenset(SCORE_NAMES)


def score(
    event: TrackedEvent,
    state: VisitorState | None,
    *,
    models_enabled: Iterable[str] = SCORE_NAMES,
    now_ms: int | None = None,
    own_hosts: frozenset[str] = frozenset(),
) -> tuple[dict[str, float], VisitorState]:
    """Score one event against its visitor's state (None: a new visitor).

    Returns the enabled scores (a disabled model is absent, never 0) and the updated state
    (the same object as ``state`` when one was given).  ``now_ms`` is the time the
    time-based features are taken at (default: the event's time); ``own_hosts`` are the
    site's own hostnames, so an internal referrer does not count as a Referral.
    """
    if state is None:
        state = VisitorState(event.visitor_id, event.site_id)
    req = event.request
    ua = req.user_agent if req else ""
    scores = _score_state(event, state, device.parse_device(ua), bot_mod.ua_flags(ua),
                          event.ts_ms if now_ms is None else now_ms, models_enabled, own_hosts)
    return scores, state


def _score_state(event: TrackedEvent, state: VisitorState, device_fields: tuple[str, str, str], ua_flags: int,
                 now_ms: int, models_enabled: Iterable[str], own_hosts: frozenset[str]) -> dict[str, float]:
    """:func:`score` once the device and the UA's bot flags are known (the request path
    works them out once per request): features, the 16 formulas, the enabled subset."""
    event.device_type, event.browser, event.os = device_fields
    observe(state, event, own_hosts)
    now = now_ms if now_ms > state.last_ms else state.last_ms
    scores, reasons = _compute(state, ua_flags, now)
    if models_enabled is not SCORE_NAMES:
        enabled = _enabled(models_enabled)
        if enabled is not None:
            scores = {k: v for k, v in scores.items() if k in enabled}
    event.scores = scores
    event.bot_reasons = reasons
    event.model_version = MODEL_VERSION
    return scores


_ENABLED_CACHE: dict[tuple[str, ...], frozenset[str] | None] = {}


def _enabled(models_enabled: Iterable[str]) -> Iterable[str] | None:
    """The enabled models as a set, None when every model is enabled.  A site config's
    tuple is looked up in a small memo (every event of a site asks the same question)."""
    cacheable = type(models_enabled) is tuple
    if cacheable:
        try:
            return _ENABLED_CACHE[models_enabled]  # type: ignore[index]
        except KeyError:
            pass
    enabled = models_enabled if isinstance(models_enabled, (set, frozenset)) else frozenset(models_enabled)
    result = None if enabled == _ALL else enabled
    if cacheable:
        if len(_ENABLED_CACHE) >= 256:
            _ENABLED_CACHE.clear()
        _ENABLED_CACHE[models_enabled] = result  # type: ignore[index,assignment]
    return result


def _secret_from_env() -> bytes | None:
    raw = os.environ.get(SECRET_ENV, "")
    return raw.encode() if raw else None


def resolve_secret(secret: bytes | str | None = None) -> bytes:
    """The key of cookieless visitor ids: ``secret``, else ``CLICKSTREAM_ID_SECRET``, else a
    random per-process one (with a warning: such ids change when the process restarts)."""
    if isinstance(secret, str):
        secret = secret.encode()
    if not secret:
        secret = _secret_from_env()
    if not secret:
        log.warning("no %s set: cookieless visitor ids will change when the process restarts", SECRET_ENV)
        secret = secrets.token_bytes(32)
    return secret


class Scorer:
    """Identity → session → scores for the worker, one call per event.

    ``secret`` keys the cookieless visitor hash; give the same secret to every worker and
    keep it across restarts (else cookieless visitors get new ids).  Default: the
    ``CLICKSTREAM_ID_SECRET`` environment variable, else a random per-process secret (a
    warning is logged).  Thread-safe: one lock around a whole event (the worker calls it
    from its event loop, so the lock is never contended there).
    """

    def __init__(self, secret: bytes | str | None = None, store: SessionStore | None = None) -> None:
        self.secret: bytes = resolve_secret(secret)
        self.store = store if store is not None else SessionStore()
        self._lock = threading.Lock()
        self._hosts: dict[tuple[str, tuple[str, ...]], frozenset[str]] = {}
        self._last_hosts: tuple[SiteConfig | None, frozenset[str]] = (None, frozenset())
        self.last_identity: Identity | None = None
        # the last request's User-Agent -> (its device fields, its bot flags)
        self._request_memo: tuple[Any, ...] = (None, ("", "", ""), 0)
        device.warm_up()
        bot_mod.warm_up()

    def own_hosts(self, config: SiteConfig) -> frozenset[str]:
        last = self._last_hosts  # the same (frozen) config object as the last event's: no hashing
        if last[0] is config:
            return last[1]
        key = (config.domain, config.hostnames)
        hosts = self._hosts.get(key)
        if hosts is None:
            hosts = frozenset(h.lower() for h in (config.domain, *config.hostnames) if h)
            self._hosts[key] = hosts
        self._last_hosts = (config, hosts)
        return hosts

    def identify(self, event: TrackedEvent, config: SiteConfig) -> Identity:
        req = event.request
        site = req.site_id if req else config.site_id
        now = req.received_ms if req else event.ts_ms
        store = self.store
        return resolve_visitor(event, config, self.secret, now, known=lambda vid: store.has(site, vid, now))

    def process(self, event: TrackedEvent, config: SiteConfig) -> dict[str, float]:
        """Resolve the visitor, update its session and return the enabled scores; the
        event is filled in (visitor_id, session_id, scores, ...) for the row.

        An event of a request with a site id (every event the worker sees) takes
        :meth:`_process_request_event`; the rest the reference :meth:`_process_general`."""
        req = event.request
        if req is not None and req.site_id:
            return self._process_request_event(event, config, req)
        return self._process_general(event, config)

    def _process_request_event(self, event: TrackedEvent, config: SiteConfig, req: RequestInfo) -> dict[str, float]:
        """:meth:`_process_general` with the device and UA flags worked out once per request
        (:func:`_score_state` takes them) and the store's lock taken once around get → score →
        put: the same store operations in the same order, the same results
        (tests/test_scoring_fast.py compares both paths)."""
        site = req.site_id
        now = req.received_ms
        ua = req.user_agent
        store = self.store
        # the locks by acquire/release: a with statement costs twice as much, per event
        lock = self._lock
        lock.acquire()
        try:
            ident = resolve_visitor(event, config, self.secret, now, known=lambda vid: store.has(site, vid, now))
            self.last_identity = ident
            vid = event.visitor_id = ident.visitor_id
            # the device and the UA's bot flags depend only on the User-Agent: worked out once
            # per request, its events share these very objects
            memo = self._request_memo
            if memo[0] is ua:
                device, flags = memo[1], memo[2]
            else:
                device, flags = parse_device(ua), ua_flags(ua)
                self._request_memo = (ua, device, flags)
            ts = event.ts_ms
            store_lock = store.lock
            store_lock.acquire()
            try:
                state = store.get_locked((site, vid), ts)
                if state is None:
                    state = VisitorState(vid, site)
                scores = _score_state(event, state, device, flags, ts, config.models_enabled, self.own_hosts(config))
                store.put_locked(state, ts)
            finally:
                store_lock.release()
            return scores
        finally:
            lock.release()

    def _process_general(self, event: TrackedEvent, config: SiteConfig) -> dict[str, float]:
        with self._lock:
            ident = self.identify(event, config)
            self.last_identity = ident
            vid = event.visitor_id = ident.visitor_id
            req = event.request
            site = (req.site_id if req else "") or config.site_id
            store = self.store
            ts = event.ts_ms
            state = store.get(site, vid, ts)
            if state is None:
                state = VisitorState(vid, site)
            scores, state = score(event, state, models_enabled=config.models_enabled,
                                  own_hosts=self.own_hosts(config))
            store.put(state, ts)
            return scores

    def rebuild(self, rows: Iterable[Mapping[str, Any] | TrackedEvent]) -> int:
        """Restore visitor states from recent lake rows (see SessionStore.rebuild)."""
        with self._lock:
            return self.store.rebuild(rows)
