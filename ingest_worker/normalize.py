"""The tracking contract as code: request body → JSON events → validated :class:`TrackedEvent`.

These are the first stages of the worker pipeline after the tenant is known
(DESIGN.md, "Tracking contract"):

* :func:`parse_body` turns the raw ``POST /v1/collect`` body into the list of raw event
  objects (one object, or ``{"events": [...]}``), refusing malformed or oversized bodies;
* :func:`parse_query` does the same for the pixel ``GET /v1/collect.gif?...``;
* :func:`request_info` collects what the request itself says (User-Agent, client IP,
  visitor cookie, the edge geo headers);
* :func:`parse_event` validates one raw event and builds the :class:`TrackedEvent`.

Nothing here raises on client input: every problem becomes a :class:`Rejection` whose
``reason`` is a short sentence naming the offending field, and whose ``status`` is the HTTP
status a whole-request rejection should get (413 for sizes, 400 otherwise).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from ingest_worker.events import EVENT_TYPES, RequestInfo, TrackedEvent

MAX_BODY_BYTES = 1_000_000
MAX_BATCH = 500
MAX_FIELD_BYTES = 8192
MAX_SKEW_MS = 5 * 60_000
MAX_LATENESS_MS = 30 * 86_400_000
MAX_EVENT_ID_CHARS = 128
MAX_EVENT_ID_BYTES = 256  # blob18's limit: a longer id would be stored cut, and not match itself on a retry
MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_FUTURE_MS = 86_400_000  # a ts more than a day ahead of the receive time is nonsense

STRING_FIELDS = (
    "name",
    "url",
    "referrer",
    "title",
    "visitor_id",
    "screen",
    "viewport",
    "language",
    "timezone",
    "target",
    "currency",
)
NUMBER_FIELDS = ("ts", "scroll_depth", "time_on_page_ms", "x", "y", "value")
_NO_STRINGS = dict.fromkeys(STRING_FIELDS, "")
_NO_NUMBERS: dict[str, Any] = dict.fromkeys(NUMBER_FIELDS)
UTM_PARAMS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
CLICK_ID_PARAMS = ("gclid", "fbclid", "msclkid")

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_SIZE = re.compile(r"[0-9]{1,6}x[0-9]{1,6}")
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9._~-]{1,128}")


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a body or an event was refused; ``status`` is the HTTP status for a whole request."""

    reason: str
    status: int = 400
    field: str = ""  # the offending field ("body", "events", "type", "url", ...)


def _reject(field: str, reason: str, status: int = 400) -> Rejection:
    return Rejection(reason=reason, status=status, field=field)


# --- the body ---------------------------------------------------------------------------------
def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


# a number of 19+ digits may be an integer beyond 64 bits, which orjson reads as a float where
# json reads an int: such a body takes json.  Found at memory speed: the body with every digit
# made "0" and everything else " ", searched for 19 zeros; a run counts when it starts the body
# or follows [ : , whitespace or "-" (a digit run inside a string mostly follows a letter or a
# quote -- a hex visitor id -- and does not; one after a space does: json then, slower, not wrong)
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_RUN = b"0" * 19
_BEFORE_NUMBER = frozenset(b"[:, \t\r\n")


def _has_long_number(raw: bytes) -> bool:
    flat = raw.translate(_DIGITS_ONLY)
    at = flat.find(_RUN)
    while at != -1:
        before = at - 1
        if before >= 0 and raw[before] == 0x2D:  # a minus sign
            before -= 1
        if before < 0 or raw[before] in _BEFORE_NUMBER:
            return True
        end = flat.find(b" ", at)
        if end == -1:
            return False
        at = flat.find(_RUN, end)
    return False


def _loads(raw: bytes) -> Any:
    """The body's JSON document as ``json.loads`` reads it, by orjson when that gives the
    same (twice as fast); ``_SLOW`` when json must decide, error messages included: orjson
    refuses what json refuses and more (NaN, lone surrogates, a BOM, invalid UTF-8), and
    reads the same document from everything else except long integers, kept from it above
    (tests/test_normalize.py compares both on arbitrary documents)."""
    if _has_long_number(raw):
        return _SLOW
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _SLOW


_SLOW = object()


def parse_body(
    raw: bytes,
    content_type: str | None = None,
    max_body: int = MAX_BODY_BYTES,
    max_batch: int = MAX_BATCH,
) -> list[Any] | Rejection:
    """The raw event objects of a ``POST /v1/collect`` body, or why the body is refused.

    The body is JSON whatever the Content-Type says (``navigator.sendBeacon`` sends
    ``text/plain``), except a form or multipart body, which is refused.
    """
    if len(raw) > max_body:
        return _reject("body", f"request body is larger than {max_body} bytes", 413)
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return _reject("body", f"request body must be JSON, not {ctype}")
    doc = _loads(raw)
    if doc is _SLOW:
        doc = _loads_checked(raw)
        if type(doc) is Rejection:
            return doc
    if not isinstance(doc, dict):
        return _reject("body", 'request body must be one event object or {"events": [...]}')
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(doc, MAX_DEPTH):
        return _reject("body", f"request body is nested too deeply (more than {MAX_DEPTH} levels)")
    if "events" not in doc:
        return [doc]
    events = doc["events"]
    if not isinstance(events, list):
        return _reject("events", "field 'events' must be a list of event objects")
    if not events:
        return _reject("events", "field 'events' is an empty batch")
    if len(events) > max_batch:
        return _reject("events", f"field 'events' holds {len(events)} events, more than the {max_batch} allowed", 413)
    return events


MAX_DEPTH = 200  # JSON nesting levels a body may have (what orjson and pickle carry with room)


def _deeper_than(doc: Any, limit: int) -> bool:
    """Whether ``doc`` nests more than ``limit`` arrays/objects deep (iteratively: a deep
    document never exhausts Python's stack here)."""
    stack = [(doc, 1)]
    while stack:
        item, depth = stack.pop()
        values = item.values() if isinstance(item, dict) else item
        for v in values:
            if isinstance(v, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((v, depth + 1))
    return False


def _loads_checked(raw: bytes) -> Any:
    """The body's JSON document by ``json.loads``, or why it is refused."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return _reject("body", "request body is not valid UTF-8")
    if not text.strip():
        return _reject("body", "request body is empty")
    try:
        doc = json.loads(text, parse_constant=_no_constants)
    except ValueError as e:  # JSONDecodeError, NaN/Infinity, over-long integers
        msg = str(e)
        if "not allowed" in msg:
            return _reject("body", "request body contains NaN or Infinity, which JSON does not allow")
        return _reject("body", f"request body is not valid JSON: {msg[:120]}")
    except RecursionError:
        return _reject("body", "request body is nested too deeply")
    return doc


def _query_number(value: str) -> Any:
    try:
        n = int(value)
        return n
    except ValueError:
        pass
    try:
        f = float(value)
    except ValueError:
        return value  # left as a string: parse_event names the field
    return f if math.isfinite(f) else value


_QUERY_NUMBERS = frozenset(NUMBER_FIELDS)


def parse_query(params: Mapping[str, str]) -> list[Any]:
    """The event of a pixel request ``GET /v1/collect.gif?type=page_view&url=...``.

    Fields are the body's; numbers are converted; ``consent`` is ``1/0/true/false``;
    properties come as ``props.key=value`` pairs or one JSON ``props`` object.
    """
    event: dict[str, Any] = {}
    props: dict[str, Any] = {}
    for key in params:
        value = params[key]
        if key.startswith("props."):
            if len(key) > 6:
                props[key[6:]] = value
        elif key == "props":
            try:
                parsed = json.loads(value, parse_constant=_no_constants)
            except (ValueError, RecursionError):
                parsed = value  # parse_event rejects it, naming 'props'
            if isinstance(parsed, (dict, list)) and _deeper_than(parsed, MAX_DEPTH - 1):
                parsed = value  # (kept as the text, rejected as not an object, like any odd props)
            event["props"] = parsed
        elif key in _QUERY_NUMBERS:
            event[key] = _query_number(value)
        elif key == "consent":
            low = value.strip().lower()
            event[key] = True if low in ("1", "true", "yes") else False if low in ("0", "false", "no") else value
        else:
            event[key] = value
    if props:
        base = event.get("props")
        if isinstance(base, dict):
            event["props"] = {**base, **props}
        elif base is None:
            event["props"] = props
    return [event]


# --- the request --------------------------------------------------------------------------------
def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower(), "")
    return _fix_latin1(str(value).strip())


def _fix_latin1(value: str) -> str:
    """ASGI servers decode header bytes as latin-1; UTF-8 sent by the edge (city names)
    is put back together here."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _coordinate(value: str, limit: float) -> float | None:
    try:
        f = float(value)
    except ValueError:
        return None
    if not math.isfinite(f) or abs(f) > limit:
        return None
    return f


def cookie_value(cookie_header: str, name: str) -> str:
    """The value of cookie ``name`` in a Cookie header, '' when absent or not a plausible id."""
    for part in cookie_header.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            value = value.strip().strip('"')
            return value if _COOKIE_VALUE.fullmatch(value) else ""
    return ""


def _client_ip(forwarded_for: str, client_ip: str) -> str:
    first = forwarded_for.split(",", 1)[0].strip()
    if first:
        try:
            return str(ipaddress.ip_address(first))
        except ValueError:
            pass
    return client_ip


def request_info(
    site_id: str,
    headers: Mapping[str, str],
    client_ip: str,
    now_ms: int,
    cookie_name: str = "_cs_vid",
) -> RequestInfo:
    """What the request tells about every event in it; never fails (bad values are dropped)."""
    lowered = {str(k).lower(): v for k, v in headers.items()}
    country = _header(lowered, "cf-ipcountry").upper()[:8]
    return RequestInfo(
        site_id=site_id,
        received_ms=int(now_ms),
        user_agent=_header(lowered, "user-agent")[:1024],
        ip=_client_ip(_header(lowered, "x-forwarded-for"), client_ip),
        cookie_visitor_id=cookie_value(_header(lowered, "cookie"), cookie_name),
        country="" if country in ("XX", "T1") else country,
        region=_header(lowered, "cf-region")[:128],
        city=_header(lowered, "cf-ipcity")[:128],
        lat=_coordinate(_header(lowered, "cf-iplatitude"), 90.0),
        lon=_coordinate(_header(lowered, "cf-iplongitude"), 180.0),
    )


# --- one event -------------------------------------------------------------------------------------
def event_id_problem(event_id: str) -> str | None:
    """Why ``event_id`` cannot be a dedupe key that the lake stores as it is, or None: the
    stored id (blob18) must equal the id a retry sends, so no lone surrogate (stored as
    U+FFFD) and no more than :data:`MAX_EVENT_ID_BYTES` bytes (stored cut)."""
    if len(event_id) > MAX_EVENT_ID_CHARS:
        return f"is longer than {MAX_EVENT_ID_CHARS} characters"
    if event_id.isascii():
        return None
    try:
        size = len(event_id.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    if size > MAX_EVENT_ID_BYTES:
        return f"is longer than {MAX_EVENT_ID_BYTES} bytes in UTF-8"
    return None


def _string(obj: Mapping[str, Any], field: str, max_bytes: int) -> str | Rejection:
    value = obj.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        return _reject(field, f"field '{field}' must be a string")
    if len(value) * 4 > max_bytes and len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        return _reject(field, f"field '{field}' is longer than {max_bytes} bytes")
    return value


def _number(obj: Mapping[str, Any], field: str) -> float | int | None | Rejection:
    value = obj.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _reject(field, f"field '{field}' must be a number")
    try:
        f = float(value)
    except OverflowError:
        return _reject(field, f"field '{field}' is too large a number")
    if not math.isfinite(f):
        return _reject(field, f"field '{field}' must be a finite number")
    return value


def _scalar_ok(v: Any) -> bool:
    if v is None or isinstance(v, (str, bool, int)):
        if isinstance(v, int) and not isinstance(v, bool):
            return abs(v) < 2**63
        return True
    return isinstance(v, float) and math.isfinite(v)


def _props(obj: Mapping[str, Any], max_bytes: int) -> dict[str, Any] | Rejection:
    value = obj.get("props")
    if value is None:
        return {}
    if not isinstance(value, dict):
        return _reject("props", "field 'props' must be a flat object")
    size = 0
    for k, v in value.items():
        if not _scalar_ok(v):
            return _reject("props", f"field 'props' must be a flat object of strings, numbers, booleans or null (key {str(k)[:40]!r})")
        size += len(str(k).encode("utf-8", "surrogatepass"))
        if isinstance(v, str):
            size += len(v.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            return _reject("props", f"field 'props' is larger than {max_bytes} bytes")
    return dict(value)


def _url(raw: str) -> tuple[str, dict[str, str]] | Rejection:
    """(path + query, first value of each query parameter) of an absolute URL or a path."""
    if not raw:
        return "", {}
    try:
        parts = urlsplit(raw)
    except ValueError:
        return _reject("url", "field 'url' is not a valid URL")
    scheme = parts.scheme.lower()
    if scheme and scheme not in ("http", "https") and not raw.startswith(("/", "?")):
        return _reject("url", "field 'url' must be an http(s) URL or a path")
    if scheme in ("http", "https") and parts.netloc:
        path = parts.path or "/"
        url = path + ("?" + parts.query if parts.query else "")
    else:
        url = raw.split("#", 1)[0]
    params: dict[str, str] = {}
    if parts.query:
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            params.setdefault(k, v)
    return url, params


def parse_event(
    obj: Any,
    req: RequestInfo,
    *,
    max_field_bytes: int = MAX_FIELD_BYTES,
    max_skew_ms: int = MAX_SKEW_MS,
    max_lateness_ms: int = MAX_LATENESS_MS,
) -> TrackedEvent | Rejection:
    """Validate one raw event object (tracking contract) into a :class:`TrackedEvent`.

    The common well-formed event takes :func:`parse_well_formed` (one pass, no
    per-field helpers); anything it is not sure of -- every event that will be
    rejected, and the rare odd but valid one -- goes through :func:`parse_event_checked`,
    which names the first offending field.  Both give equal events for what the fast
    path accepts (tests/test_normalize_fast.py checks it on arbitrary input)."""
    if type(obj) is dict:
        event = parse_well_formed(obj, req, max_field_bytes, max_skew_ms, max_lateness_ms)
        if event is not None:
            return event
    return parse_event_checked(obj, req, max_field_bytes=max_field_bytes, max_skew_ms=max_skew_ms,
                               max_lateness_ms=max_lateness_ms)


def parse_event_checked(
    obj: Any,
    req: RequestInfo,
    *,
    max_field_bytes: int = MAX_FIELD_BYTES,
    max_skew_ms: int = MAX_SKEW_MS,
    max_lateness_ms: int = MAX_LATENESS_MS,
) -> TrackedEvent | Rejection:
    """:func:`parse_event` field by field: the reference, and the path of every rejection."""
    if not isinstance(obj, dict):
        return _reject("event", "event must be a JSON object")
    etype = obj.get("type")
    if etype is None or etype == "":
        return _reject("type", "field 'type' is required")
    if not isinstance(etype, str):
        return _reject("type", "field 'type' must be a string")
    if etype not in EVENT_TYPES:
        return _reject("type", f"field 'type' must be one of {', '.join(EVENT_TYPES)} (got {etype[:40]!r})")

    # only the fields the event carries are checked (most events carry few of them)
    strings: dict[str, str] = dict(_NO_STRINGS)
    numbers: dict[str, Any] = dict(_NO_NUMBERS)
    for f in STRING_FIELDS:  # in this order, so the first bad field named is always the same
        if f not in obj:
            continue
        s = _string(obj, f, max_field_bytes)
        if isinstance(s, Rejection):
            return s
        strings[f] = s
    for f in NUMBER_FIELDS:
        if f not in obj:
            continue
        n = _number(obj, f)
        if isinstance(n, Rejection):
            return n
        numbers[f] = n

    # -- time
    received = req.received_ms
    ts_ms = received
    client_ts: int | None = None
    if numbers["ts"] is not None:
        client_ts = int(numbers["ts"])
        if client_ts < MIN_TS_MS or client_ts > received + MAX_FUTURE_MS:
            return _reject("ts", "field 'ts' is not a plausible time (ms since epoch, after 2000, not in the future)")
        if received - max_lateness_ms <= client_ts <= received + max_skew_ms:
            ts_ms = client_ts

    # -- identifiers
    event_id = obj.get("event_id")
    if event_id is None or event_id == "":
        event_id = uuid.uuid4().hex
    elif not isinstance(event_id, str):
        return _reject("event_id", "field 'event_id' must be a string")
    elif (problem := event_id_problem(event_id)) is not None:
        return _reject("event_id", f"field 'event_id' {problem}")

    hem = obj.get("hem")
    if hem is None or hem == "":
        hem = ""
    elif not isinstance(hem, str) or not _HEX64.fullmatch(hem):
        return _reject("hem", "field 'hem' must be a sha256 hex digest (64 hex characters)")
    else:
        hem = hem.lower()

    consent = obj.get("consent")
    if consent is not None and not isinstance(consent, bool):
        return _reject("consent", "field 'consent' must be true or false")

    for f in ("screen", "viewport"):
        if strings[f] and not _SIZE.fullmatch(strings[f]):
            return _reject(f, f"field '{f}' must look like WIDTHxHEIGHT, e.g. 1920x1080")

    sd = numbers["scroll_depth"]
    if sd is not None and not 0 <= sd <= 100:
        return _reject("scroll_depth", "field 'scroll_depth' must be a percentage between 0 and 100")
    top = numbers["time_on_page_ms"]
    if top is not None and top < 0:
        return _reject("time_on_page_ms", "field 'time_on_page_ms' must not be negative")

    props = _props(obj, max_field_bytes)
    if isinstance(props, Rejection):
        return props

    order_id_raw = obj.get("order_id")
    if order_id_raw is None or order_id_raw == "":
        order_id_raw = props.get("order_id")
    if order_id_raw is None:
        order_id = ""
    elif isinstance(order_id_raw, str):
        if len(order_id_raw.encode("utf-8", "surrogatepass")) > max_field_bytes:
            return _reject("order_id", f"field 'order_id' is longer than {max_field_bytes} bytes")
        order_id = order_id_raw
    elif isinstance(order_id_raw, int) and not isinstance(order_id_raw, bool):
        order_id = str(order_id_raw)
    else:
        return _reject("order_id", "field 'order_id' must be a string or an integer")

    value = numbers["value"]
    if etype == "purchase" and (value is None or value < 0):
        return _reject("value", "field 'value' of a purchase must be a number of at least 0")

    parsed = _url(strings["url"])
    if isinstance(parsed, Rejection):
        return parsed
    url, params = parsed

    def flt(v: Any) -> float | None:
        return None if v is None else float(v)

    return TrackedEvent(
        type=etype,
        ts_ms=ts_ms,
        event_id=event_id,
        url=url,
        referrer=strings["referrer"],
        title=strings["title"],
        name=strings["name"],
        sdk_visitor_id=strings["visitor_id"],
        consent=consent,
        hem=hem,
        screen=strings["screen"],
        viewport=strings["viewport"],
        language=strings["language"],
        timezone=strings["timezone"],
        scroll_depth=flt(sd),
        time_on_page_ms=flt(top),
        x=flt(numbers["x"]),
        y=flt(numbers["y"]),
        target=strings["target"],
        value=flt(value),
        currency=strings["currency"],
        order_id=order_id,
        props=props,
        client_ts_ms=client_ts,
        utm_source=params.get("utm_source", ""),
        utm_medium=params.get("utm_medium", ""),
        utm_campaign=params.get("utm_campaign", ""),
        utm_term=params.get("utm_term", ""),
        utm_content=params.get("utm_content", ""),
        gclid=params.get("gclid", ""),
        fbclid=params.get("fbclid", ""),
        msclkid=params.get("msclkid", ""),
        request=req,
    )


# --- the fast path of parse_event ------------------------------------------------------------------
_EVENT_TYPE_SET = frozenset(EVENT_TYPES)
_BIG_INT = 2**1000  # an int of smaller magnitude is a finite float
URL_PARAMS = UTM_PARAMS + CLICK_ID_PARAMS
URL_CACHE_SIZE = 8192  # distinct URL strings remembered (real traffic repeats URLs heavily)
URL_CACHE_MAX_CHARS = 512  # longer URLs are parsed each time (bounds the cache to a few MB)
_NO_PARAMS = ("",) * len(URL_PARAMS)

assert STRING_FIELDS == ("name", "url", "referrer", "title", "visitor_id", "screen", "viewport", "language",
                         "timezone", "target", "currency"), "parse_well_formed unpacks these in this order"
assert NUMBER_FIELDS == ("ts", "scroll_depth", "time_on_page_ms", "x", "y", "value"), "parse_well_formed unpacks these in this order"

# TrackedEvent is built positionally on the fast path (a third of the cost of 33 keywords)
_POSITIONAL = (
    "type", "ts_ms", "event_id", "url", "referrer", "title", "name", "sdk_visitor_id", "consent", "hem",
    "screen", "viewport", "language", "timezone", "scroll_depth", "time_on_page_ms", "x", "y", "target",
    "value", "currency", "order_id", "props", "client_ts_ms", *URL_PARAMS, "request",
)
assert tuple(f.name for f in fields(TrackedEvent))[: len(_POSITIONAL)] == _POSITIONAL, "TrackedEvent fields moved"


_SIZES_SEEN: dict[str, bool] = {}  # screen / viewport strings already matched (True: a size)
SIZES_SEEN_MAX = 4096


def _is_size(value: str) -> bool:
    """``_SIZE.fullmatch(value)``, remembered for strings short enough to be a size (real
    traffic has few distinct screen sizes)."""
    ok = _SIZE.fullmatch(value) is not None
    if len(value) <= 13:  # "999999x999999": anything longer is never a size
        if len(_SIZES_SEEN) >= SIZES_SEEN_MAX:
            _SIZES_SEEN.clear()
        _SIZES_SEEN[value] = ok
    return ok


def _url_pieces(raw: str) -> tuple[str, ...] | Rejection:
    """``(path + query, utm_source, ..., msclkid)`` of a URL, as :func:`_url` finds them."""
    if not raw:
        return ("", *_NO_PARAMS)
    try:
        parts = urlsplit(raw)
    except ValueError:
        return _reject("url", "field 'url' is not a valid URL")
    scheme = parts.scheme.lower()
    if scheme and scheme not in ("http", "https") and not raw.startswith(("/", "?")):
        return _reject("url", "field 'url' must be an http(s) URL or a path")
    query = parts.query
    if scheme in ("http", "https") and parts.netloc:
        url = (parts.path or "/") + ("?" + query if query else "")
    else:
        url = raw.split("#", 1)[0]
    # parse_qsl only when a wanted name can be in the query: a key matches only if the name
    # is in it literally or it is percent-encoded ('+' decodes to a space, which no name has)
    if not query or ("%" not in query and "utm_" not in query and "clid" not in query):
        return (url, *_NO_PARAMS)
    params: dict[str, str] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        params.setdefault(k, v)
    return (url, *(params.get(k, "") for k in URL_PARAMS))


_url_pieces_cached = functools.lru_cache(maxsize=URL_CACHE_SIZE)(_url_pieces)


def url_pieces(raw: str) -> tuple[str, ...] | Rejection:
    """:func:`_url_pieces`, remembered in a bounded LRU for URLs up to 512 characters."""
    if len(raw) > URL_CACHE_MAX_CHARS:
        return _url_pieces(raw)
    return _url_pieces_cached(raw)


def parse_well_formed(
    obj: dict[str, Any], req: RequestInfo, max_bytes: int, max_skew_ms: int, max_lateness_ms: int
) -> TrackedEvent | None:
    """The event when ``obj`` is plainly valid, else None (then the checked path decides).

    Accepts only what :func:`parse_event_checked` accepts and builds the same event: a
    string field is None or a ``str`` short enough for sure, a number field None, an
    ``int`` of float range or a finite ``float``; every other check is the checked one."""
    get = obj.get
    etype = get("type")
    if type(etype) is not str or etype not in _EVENT_TYPE_SET:
        return None
    max_chars = max_bytes // 4  # len * 4 <= max_bytes: within the limit whatever the encoding
    # one get per field, the checks unrolled (a loop costs as much as the checks): a string is
    # None or a str of at most max_chars; a number None, an int of float range or a finite
    # float (v - v is nan for inf and nan)
    name, raw_url, referrer, title, visitor_id, screen, viewport, language, timezone, target, currency = map(
        get, STRING_FIELDS)
    if name is None:
        name = ""
    elif type(name) is not str or len(name) > max_chars:
        return None
    if raw_url is None:
        raw_url = ""
    elif type(raw_url) is not str or len(raw_url) > max_chars:
        return None
    if referrer is None:
        referrer = ""
    elif type(referrer) is not str or len(referrer) > max_chars:
        return None
    if title is None:
        title = ""
    elif type(title) is not str or len(title) > max_chars:
        return None
    if visitor_id is None:
        visitor_id = ""
    elif type(visitor_id) is not str or len(visitor_id) > max_chars:
        return None
    if screen is None:
        screen = ""
    elif type(screen) is not str or len(screen) > max_chars:
        return None
    if viewport is None:
        viewport = ""
    elif type(viewport) is not str or len(viewport) > max_chars:
        return None
    if language is None:
        language = ""
    elif type(language) is not str or len(language) > max_chars:
        return None
    if timezone is None:
        timezone = ""
    elif type(timezone) is not str or len(timezone) > max_chars:
        return None
    if target is None:
        target = ""
    elif type(target) is not str or len(target) > max_chars:
        return None
    if currency is None:
        currency = ""
    elif type(currency) is not str or len(currency) > max_chars:
        return None
    ts, sd, top, x, y, value = map(get, NUMBER_FIELDS)
    if ts is not None and not ((type(ts) is int and -_BIG_INT < ts < _BIG_INT)
            or (type(ts) is float and ts - ts == 0.0)):
        return None
    if sd is not None and not ((type(sd) is int and -_BIG_INT < sd < _BIG_INT)
            or (type(sd) is float and sd - sd == 0.0)):
        return None
    if top is not None and not ((type(top) is int and -_BIG_INT < top < _BIG_INT)
            or (type(top) is float and top - top == 0.0)):
        return None
    if x is not None and not ((type(x) is int and -_BIG_INT < x < _BIG_INT)
            or (type(x) is float and x - x == 0.0)):
        return None
    if y is not None and not ((type(y) is int and -_BIG_INT < y < _BIG_INT)
            or (type(y) is float and y - y == 0.0)):
        return None
    if value is not None and not ((type(value) is int and -_BIG_INT < value < _BIG_INT)
            or (type(value) is float and value - value == 0.0)):
        return None

    received = req.received_ms
    ts_ms = received
    client_ts: int | None = None
    if ts is not None:
        client_ts = int(ts)
        if client_ts < MIN_TS_MS or client_ts > received + MAX_FUTURE_MS:
            return None
        if received - max_lateness_ms <= client_ts <= received + max_skew_ms:
            ts_ms = client_ts

    event_id = get("event_id")
    if event_id is None or event_id == "":
        event_id = uuid.uuid4().hex
    elif type(event_id) is not str or len(event_id) > MAX_EVENT_ID_CHARS or not event_id.isascii():
        return None

    hem = get("hem")
    if hem is None or hem == "":
        hem = ""
    elif type(hem) is str and _HEX64.fullmatch(hem):
        hem = hem.lower()
    else:
        return None

    consent = get("consent")
    if consent is not None and type(consent) is not bool:
        return None
    if screen and not (_SIZES_SEEN.get(screen) or _is_size(screen)):
        return None
    if viewport and not (_SIZES_SEEN.get(viewport) or _is_size(viewport)):
        return None
    if sd is not None and not 0 <= sd <= 100:
        return None
    if top is not None and top < 0:
        return None

    props: Any = get("props")
    if props is None:
        props = {}
    else:
        props = _props(obj, max_bytes)
        if type(props) is Rejection:
            return None

    order_id: Any = get("order_id")
    if order_id is None or order_id == "":
        order_id = props.get("order_id")
    if order_id is None:
        order_id = ""
    elif type(order_id) is str:
        if len(order_id) > max_chars and len(order_id.encode("utf-8", "surrogatepass")) > max_bytes:
            return None
    elif isinstance(order_id, int) and not isinstance(order_id, bool):
        order_id = str(order_id)
    else:
        return None

    if etype == "purchase" and (value is None or value < 0):
        return None

    pieces = url_pieces(raw_url)
    if type(pieces) is Rejection:
        return None
    url, utm_source, utm_medium, utm_campaign, utm_term, utm_content, gclid, fbclid, msclkid = pieces

    return TrackedEvent(
        etype, ts_ms, event_id, url, referrer, title, name, visitor_id, consent, hem,
        screen, viewport, language, timezone,
        None if sd is None else float(sd), None if top is None else float(top),
        None if x is None else float(x), None if y is None else float(y),
        target, None if value is None else float(value), currency, order_id, props, client_ts,
        utm_source, utm_medium, utm_campaign, utm_term, utm_content, gclid, fbclid, msclkid, req,
    )
