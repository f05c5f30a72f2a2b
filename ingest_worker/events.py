"""The event as it travels through the worker, stage by stage.

``request → tenant → identity → session → scores → row → durable log → Parquet``

:class:`TrackedEvent` is what validation makes of one JSON event (tracking contract,
DESIGN.md) plus what the request says about it (headers, receive time).  The identity,
session and scoring stages fill in the resolved fields; :func:`to_row_values` turns the
finished event into the flat dict :func:`clickstream_lake.codec.encode` takes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from clickstream_lake.codec import SCORE_NAMES

EVENT_TYPES = (
    "page_view",
    "click",
    "scroll",
    "engagement",
    "form_submit",
    "add_to_cart",
    "purchase",
    "error",
    "identify",
    "custom",
)


@dataclass(slots=True)
class RequestInfo:
    """What the HTTP request (not the event body) tells about every event in it."""

    site_id: str
    received_ms: int
    user_agent: str = ""
    ip: str = ""
    cookie_visitor_id: str = ""  # the first-party cookie's visitor id, when the browser sent one
    country: str = ""
    region: str = ""
    city: str = ""
    lat: float | None = None
    lon: float | None = None


@dataclass(slots=True)
class TrackedEvent:
    # -- from the body (validated) ---------------------------------------------------------
    type: str
    ts_ms: int  # event time: the client's ts when plausible, else the receive time
    event_id: str  # the client's dedupe key, else one made by the server
    url: str = ""  # path + query
    referrer: str = ""
    title: str = ""
    name: str = ""  # custom event name
    sdk_visitor_id: str = ""  # the SDK-supplied visitor id, if any
    consent: bool | None = None
    hem: str = ""  # sha256 hex of the trimmed, lower-cased e-mail
    screen: str = ""  # WxH
    viewport: str = ""
    language: str = ""
    timezone: str = ""
    scroll_depth: float | None = None  # percent 0-100
    time_on_page_ms: float | None = None
    x: float | None = None
    y: float | None = None
    target: str = ""
    value: float | None = None
    currency: str = ""
    order_id: str = ""
    props: dict[str, Any] = field(default_factory=dict)
    client_ts_ms: int | None = None  # the raw client ts, kept for timing features
    # -- from the URL ------------------------------------------------------------------------
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    utm_term: str = ""
    utm_content: str = ""
    gclid: str = ""
    fbclid: str = ""
    msclkid: str = ""
    # -- from the request ----------------------------------------------------------------------
    request: RequestInfo | None = None
    # -- filled by the identity / session / scoring stages -----------------------------------
    visitor_id: str = ""
    session_id: str = ""
    session_number: int = 0
    device_type: str = ""
    browser: str = ""
    os: str = ""
    channel: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    bot_reasons: tuple[str, ...] = ()
    model_version: str = ""
    click_count: float | None = None  # clicks so far on this page view

    @property
    def site_id(self) -> str:
        return self.request.site_id if self.request else ""


def to_row_values(ev: TrackedEvent) -> dict[str, Any]:
    """The flat, named values of the AE row (see ``clickstream_lake.codec.BLOB_SPECS``)."""
    req = ev.request or RequestInfo(site_id="", received_ms=ev.ts_ms)
    values: dict[str, Any] = {
        "timestamp": ev.ts_ms,
        "site_id": req.site_id,
        "visitor_id": ev.visitor_id,
        "session_id": ev.session_id,
        "event_type": ev.type,
        "url": ev.url,
        "referrer": ev.referrer,
        "cookie": req.cookie_visitor_id,
        "hem": ev.hem,
        "gclid": ev.gclid,
        "fbclid": ev.fbclid,
        "msclkid": ev.msclkid,
        "utm_source": ev.utm_source,
        "utm_medium": ev.utm_medium,
        "utm_campaign": ev.utm_campaign,
        "utm_term": ev.utm_term,
        "utm_content": ev.utm_content,
        "device_type": ev.device_type,
        "browser": ev.browser,
        "os": ev.os,
        "screen": ev.screen,
        "country": req.country,
        "region": req.region,
        "city": req.city,
        "lat": req.lat,
        "lon": req.lon,
        "title": ev.title,
        "event_name": ev.name,
        "props": json.dumps(ev.props, separators=(",", ":"), ensure_ascii=False, sort_keys=True) if ev.props else "",
        "target": ev.target,
        "x": ev.x,
        "y": ev.y,
        "value": ev.value,
        "currency": ev.currency,
        "order_id": ev.order_id,
        "bot_reasons": ",".join(ev.bot_reasons),
        "model_version": ev.model_version,
        "event_id": ev.event_id,
        "language": ev.language,
        "timezone": ev.timezone,
        "viewport": ev.viewport,
        "consent": "" if ev.consent is None else ("1" if ev.consent else "0"),
        "channel": ev.channel,
        "session_number": ev.session_number or None,
        "scroll_depth": ev.scroll_depth,
        "time_on_page_ms": ev.time_on_page_ms,
        "click_count": ev.click_count,
        "ts_ms": float(ev.ts_ms),
    }
    scores = ev.scores
    for v in scores.values():
        if type(v) is not float or v != v:  # None, NaN or not a float: value by value
            for name, v in scores.items():
                values[name] = v if v is not None and not (isinstance(v, float) and math.isnan(v)) else None
            break
    else:
        values.update(scores)  # the usual case: every score a finite float
    return values


# --- the row as a list (the durable log's compact "r1" record) ---------------------------------
ROW_BASE_FIELDS: tuple[str, ...] = (
    "timestamp", "site_id", "visitor_id", "session_id", "event_type", "url",
    "referrer", "cookie", "hem", "gclid", "fbclid", "msclkid",
    "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "device_type",
    "browser", "os", "screen", "country", "region", "city",
    "lat", "lon", "title", "event_name", "props", "target",
    "x", "y", "value", "currency", "order_id", "bot_reasons",
    "model_version", "event_id", "language", "timezone", "viewport", "consent",
    "channel", "session_number", "scroll_depth", "time_on_page_ms", "click_count", "ts_ms",
)
ROW_FIELDS_V1: tuple[str, ...] = ROW_BASE_FIELDS + SCORE_NAMES  # frozen: logs on disk are read with it


def row_value_list(ev: TrackedEvent) -> list[Any] | None:
    """``to_row_values(ev)``'s values in :data:`ROW_FIELDS_V1` order -- so that
    ``dict(zip(ROW_FIELDS_V1, row_value_list(ev))) == to_row_values(ev)`` -- without
    building the dict; None unless the scores are the 16 models in order, none NaN or None
    (a site with models disabled, or an odd score, keeps the dict form)."""
    scores = ev.scores
    if tuple(scores) != SCORE_NAMES:
        return None
    try:
        total = sum(scores.values())
    except TypeError:  # a None (or not a number) among them
        return None
    if total - total != 0.0:  # a NaN (or an infinity) among them: value by value in to_row_values
        return None
    req = ev.request or RequestInfo(site_id="", received_ms=ev.ts_ms)
    return [
        ev.ts_ms,
        req.site_id,
        ev.visitor_id,
        ev.session_id,
        ev.type,
        ev.url,
        ev.referrer,
        req.cookie_visitor_id,
        ev.hem,
        ev.gclid,
        ev.fbclid,
        ev.msclkid,
        ev.utm_source,
        ev.utm_medium,
        ev.utm_campaign,
        ev.utm_term,
        ev.utm_content,
        ev.device_type,
        ev.browser,
        ev.os,
        ev.screen,
        req.country,
        req.region,
        req.city,
        req.lat,
        req.lon,
        ev.title,
        ev.name,
        json.dumps(ev.props, separators=(",", ":"), ensure_ascii=False, sort_keys=True) if ev.props else "",
        ev.target,
        ev.x,
        ev.y,
        ev.value,
        ev.currency,
        ev.order_id,
        ",".join(ev.bot_reasons),
        ev.model_version,
        ev.event_id,
        ev.language,
        ev.timezone,
        ev.viewport,
        "" if ev.consent is None else ("1" if ev.consent else "0"),
        ev.channel,
        ev.session_number or None,
        ev.scroll_depth,
        ev.time_on_page_ms,
        ev.click_count,
        float(ev.ts_ms),
        *scores.values(),
    ]
