"""The AE-shaped row: field map, pipe-packing codec and Arrow schema.

Every event becomes one row shaped like a Cloudflare Analytics Engine data point:
``timestamp``, ``index1``, ``blob1..blob20`` (UTF-8, at most 256 bytes each),
``double1..double20`` (float64) and ``_sample_interval`` (always 1).

Several blobs pack more than one value, joined with ``|`` (the source article's
"pipe-delimited encoding").  Inside a packed component ``%`` and ``|`` are
percent-encoded, so ``url_decode(split_part(blob, '|', n))`` in DuckDB gives the value
back exactly.  Single-valued blobs (URL, referrer, title, ...) are stored raw, so AE
queries such as ``WHERE blob5 = '/pricing'`` work unchanged.

A blob longer than 256 bytes is cut at a UTF-8 character boundary (for packed blobs the
longest components are shortened, never a separator or an escape sequence), and the cut
is recorded in the row's ``meta`` blob so nobody mistakes a cut value for a whole one.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import pyarrow as pa

BLOB_MAX_BYTES = 256
N_BLOBS = 20
N_DOUBLES = 20

SCORE_NAMES: tuple[str, ...] = (
    "intent",
    "engagement",
    "frustration",
    "purchase_timing",
    "churn_risk",
    "content_affinity",
    "velocity",
    "loyalty",
    "conversion_prob",
    "session_quality",
    "attention",
    "nav_efficiency",
    "price_sensitivity",
    "social_proof",
    "bot_probability",
    "channel_attribution",
)

# --- field map -------------------------------------------------------------------------
# A blob spec is (name, components).  components is None for a single raw value, or the
# tuple of component names for a pipe-packed blob.
BLOB_SPECS: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("site_id", None),  # blob1
    ("visitor_id", None),  # blob2
    ("session_id", None),  # blob3
    ("event_type", None),  # blob4
    ("url", None),  # blob5  page URL (path + query)
    ("referrer", None),  # blob6
    ("identity", ("cookie", "hem", "gclid", "fbclid", "msclkid")),  # blob7
    ("utm", ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")),  # blob8
    ("device", ("device_type", "browser", "os", "screen")),  # blob9
    ("geo", ("country", "region", "city", "lat", "lon")),  # blob10
    ("title", None),  # blob11 page title
    ("event_name", None),  # blob12 custom event name
    ("props", None),  # blob13 custom properties, compact JSON object
    ("click", ("target", "x", "y")),  # blob14 click target description and position
    ("commerce", ("value", "currency", "order_id")),  # blob15
    ("bot_reasons", None),  # blob16 comma list of why bot_probability is high
    ("model_version", None),  # blob17 scoring model version
    ("event_id", None),  # blob18 dedupe key (client's, else server-made)
    ("context", ("language", "timezone", "viewport", "consent")),  # blob19
    ("meta", ("channel", "session_number", "cut")),  # blob20 channel, nth session, cut blobs
)
assert len(BLOB_SPECS) == N_BLOBS

DOUBLE_NAMES: tuple[str, ...] = SCORE_NAMES + (
    "scroll_depth",  # double17  %
    "time_on_page_ms",  # double18
    "click_count",  # double19
    "ts_ms",  # double20 timestamp ms
)
assert len(DOUBLE_NAMES) == N_DOUBLES

BLOB_INDEX = {name: i + 1 for i, (name, _) in enumerate(BLOB_SPECS)}
DOUBLE_INDEX = {name: i + 1 for i, name in enumerate(DOUBLE_NAMES)}
PACKED_COMPONENTS = {name: comps for name, comps in BLOB_SPECS if comps is not None}


# --- percent encoding of packed components ----------------------------------------------
_ESCAPES = {"%": "%25", "|": "%7C"}


def escape_component(value: str) -> str:
    """Percent-encode the characters that would break ``split_part`` + ``url_decode``."""
    if "%" not in value and "|" not in value:
        return value
    return "".join(_ESCAPES.get(c, c) for c in value)


def unescape_component(value: str) -> str:
    """Inverse of :func:`escape_component` (only the escapes it writes are undone)."""
    if "%" not in value:
        return value
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "%" and i + 2 < len(value) and value[i + 1 : i + 3].upper() in ("25", "7C"):
            out.append("%" if value[i + 1 : i + 3] == "25" else "|")
            i += 3
        else:
            out.append(c)
            i += 1
    return "".join(out)


def clean_text(value: str) -> str:
    """Valid UTF-8 only: lone surrogates (which JSON's ``\\ud800`` escapes can produce)
    become U+FFFD so every blob can be written to Parquet."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8"))


def cut_utf8(value: str, max_bytes: int) -> str:
    """Longest prefix of ``value`` whose UTF-8 encoding fits in ``max_bytes``."""
    raw = value.encode("utf-8")
    if len(raw) <= max_bytes:
        return value
    return raw[:max_bytes].decode("utf-8", errors="ignore")


def _cut_escaped(value: str, max_bytes: int) -> str:
    """Longest prefix of the raw ``value`` whose *escaped* form fits in ``max_bytes``."""
    used = 0
    for i, ch in enumerate(value):
        n = _utf8_len(_ESCAPES.get(ch, ch))
        if used + n > max_bytes:
            return value[:i]
        used += n
    return value


def pack(components: Sequence[str]) -> tuple[str, bool]:
    """Pack raw components into one blob; returns (blob, was_cut).

    When the packed form exceeds 256 bytes the longest components are shortened
    (water-filling the byte budget), so every component keeps its slot and no
    separator or escape sequence is ever broken.
    """
    joined = "|".join(components)
    if "%" not in joined and joined.count("|") == len(components) - 1:
        # fast path: nothing to escape; ASCII length is the byte length
        if len(joined) <= BLOB_MAX_BYTES // 4 or (len(joined) <= BLOB_MAX_BYTES and joined.isascii()):
            return joined, False
        escaped = list(components)
    else:
        escaped = [escape_component(c) for c in components]
    total = sum(_utf8_len(e) for e in escaped) + len(escaped) - 1
    if total <= BLOB_MAX_BYTES:
        return "|".join(escaped), False
    budget = BLOB_MAX_BYTES - (len(escaped) - 1)
    sizes = [_utf8_len(e) for e in escaped]
    # water-fill: find the cap such that sum(min(size, cap)) <= budget
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    remaining = budget
    caps = [0] * len(sizes)
    for rank, i in enumerate(order):
        share = remaining // (len(order) - rank)
        caps[i] = min(sizes[i], share)
        remaining -= caps[i]
    parts = [
        escaped[i] if sizes[i] <= caps[i] else escape_component(_cut_escaped(components[i], caps[i]))
        for i in range(len(components))
    ]
    return "|".join(parts), True


def unpack(blob: str, n: int) -> list[str]:
    """Split a packed blob into exactly ``n`` raw components (missing ones are '')."""
    parts = blob.split("|") if blob else [""]
    parts = [unescape_component(p) for p in parts[:n]]
    return parts + [""] * (n - len(parts))


# --- the row -----------------------------------------------------------------------------
def _fmt_number(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ""
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


@dataclass
class AERow:
    """One AE-shaped data point."""

    timestamp: int  # ms since epoch, UTC
    index1: str  # = site id
    blobs: list[str] = field(default_factory=lambda: [""] * N_BLOBS)
    doubles: list[float] = field(default_factory=lambda: [math.nan] * N_DOUBLES)
    _sample_interval: int = 1

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"timestamp": self.timestamp, "index1": self.index1}
        for i, b in enumerate(self.blobs, 1):
            d[f"blob{i}"] = b
        for i, v in enumerate(self.doubles, 1):
            d[f"double{i}"] = v
        d["_sample_interval"] = self._sample_interval
        return d


_META_POS = BLOB_INDEX["meta"] - 1
_TS_POS = DOUBLE_INDEX["ts_ms"] - 1
# (position, name) of single-valued blobs and (position, components) of packed ones, meta last
_SINGLE_BLOBS = [(i, name) for i, (name, comps) in enumerate(BLOB_SPECS) if comps is None]
_PACKED_BLOBS = [(i, comps) for i, (name, comps) in enumerate(BLOB_SPECS) if comps is not None and i != _META_POS]
_CUT_NAMES = [f"blob{i + 1}" for i in range(N_BLOBS)]


def encode(event: Mapping[str, Any]) -> AERow:
    """Encode a flat decoded event (names of :data:`BLOB_SPECS` components,
    :data:`DOUBLE_NAMES`, ``timestamp``) into an :class:`AERow`.

    Missing values become '' (blobs) or NaN (doubles).  Cut blobs are recorded in the
    ``cut`` component of the meta blob, as a comma list of blob names.
    """
    get = event.get
    prior_cut = get("cut")
    cut: list[str] = [c for c in str(prior_cut).split(",") if c] if prior_cut else []
    blobs: list[str] = [""] * N_BLOBS
    for i, name in _SINGLE_BLOBS:
        raw = get(name)
        if raw is None or raw == "":
            continue
        if type(raw) is not str:
            if name == "props" and isinstance(raw, Mapping):
                raw = json.dumps(raw, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
            else:
                raw = str(raw)
        if len(raw) <= BLOB_MAX_BYTES and raw.isascii():
            blobs[i] = raw
            continue
        value = clean_text(raw)
        if _utf8_len(value) > BLOB_MAX_BYTES:
            value = cut_utf8(value, BLOB_MAX_BYTES)
            cut.append(_CUT_NAMES[i])
        blobs[i] = value
    for i, comps in _PACKED_BLOBS:
        packed, was_cut = pack([_component(get(c)) for c in comps])
        if was_cut:
            cut.append(_CUT_NAMES[i])
        blobs[i] = packed
    blobs[_META_POS], _ = pack(
        [_component(get("channel")), _component(get("session_number")), ",".join(dict.fromkeys(cut))]
    )
    doubles = [_double(get(name)) for name in DOUBLE_NAMES]
    ts = int(event["timestamp"])
    if doubles[_TS_POS] != doubles[_TS_POS]:  # NaN
        doubles[_TS_POS] = float(ts)
    site = get("site_id")
    return AERow(timestamp=ts, index1=site if type(site) is str else str(site or ""), blobs=blobs, doubles=doubles)


def _component(value: Any) -> str:
    if value is None:
        return ""
    t = type(value)
    if t is str:
        return value if value.isascii() else clean_text(value)
    if t is bool:
        return "1" if value else "0"
    if t is int or t is float:
        return _fmt_number(value)
    return clean_text(str(value))


def _double(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    if type(value) is float:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def decode(row: AERow | Mapping[str, Any]) -> dict[str, Any]:
    """Decode an AE row (or its dict form) into named values (all strings / floats)."""
    if isinstance(row, AERow):
        row = row.as_dict()
    out: dict[str, Any] = {"timestamp": int(row["timestamp"])}
    for i, (name, comps) in enumerate(BLOB_SPECS, 1):
        blob = row.get(f"blob{i}") or ""
        if comps is None:
            out[name] = blob
        else:
            for comp, value in zip(comps, unpack(blob, len(comps)), strict=True):
                out[comp] = value
    for i, name in enumerate(DOUBLE_NAMES, 1):
        v = row.get(f"double{i}")
        out[name] = math.nan if v is None else float(v)
    return out


# --- Arrow ---------------------------------------------------------------------------------
ROW_SCHEMA = pa.schema(
    [pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False), pa.field("index1", pa.string())]
    + [pa.field(f"blob{i}", pa.string()) for i in range(1, N_BLOBS + 1)]
    + [pa.field(f"double{i}", pa.float64()) for i in range(1, N_DOUBLES + 1)]
    + [pa.field("_sample_interval", pa.int64())],
    metadata={"clickstream.schema": "ae-row/1"},
)


def rows_to_table(rows: Sequence[AERow]) -> pa.Table:
    """Column-wise conversion of rows to an Arrow table with :data:`ROW_SCHEMA`."""
    return columns_to_table(
        [r.timestamp for r in rows], [r.index1 for r in rows], [r.blobs for r in rows], [r.doubles for r in rows]
    )


def columns_to_table(
    timestamps: Sequence[int],
    index1: Sequence[str],
    blobs: Sequence[Sequence[str]],
    doubles: Sequence[Sequence[float | None]],
) -> pa.Table:
    """Arrow table with :data:`ROW_SCHEMA` from per-row timestamps, site ids, 20 blobs and
    20 doubles (None doubles become NaN); ``_sample_interval`` is always 1."""
    cols: dict[str, list[Any]] = {"timestamp": list(timestamps), "index1": list(index1)}
    for i in range(N_BLOBS):
        cols[f"blob{i + 1}"] = [b[i] for b in blobs]
    for i in range(N_DOUBLES):
        cols[f"double{i + 1}"] = [math.nan if d[i] is None else d[i] for d in doubles]
    cols["_sample_interval"] = [1] * len(cols["timestamp"])
    return pa.Table.from_pydict(cols, schema=ROW_SCHEMA)


def table_to_rows(table: pa.Table) -> list[AERow]:
    """Inverse of :func:`rows_to_table` (timestamps as ms since epoch)."""
    table = table.select(ROW_SCHEMA.names)
    ts = table.column("timestamp").cast(pa.int64()).to_pylist()
    idx = table.column("index1").to_pylist()
    blobs = [table.column(f"blob{i}").to_pylist() for i in range(1, N_BLOBS + 1)]
    doubles = [table.column(f"double{i}").to_pylist() for i in range(1, N_DOUBLES + 1)]
    si = table.column("_sample_interval").to_pylist()
    return [
        AERow(
            timestamp=ts[r],
            index1=idx[r] or "",
            blobs=[(b[r] or "") for b in blobs],
            doubles=[math.nan if d[r] is None else d[r] for d in doubles],
            _sample_interval=si[r],
        )
        for r in range(table.num_rows)
    ]


# --- column-wise encoding (the flusher's bulk path) ---------------------------------------
_STR_TYPES = frozenset({str, type(None)})
_NUM_TYPES = frozenset({float, int, type(None)})


def _string_array(values: Sequence[Any], convert: Any, *, scan: bool = True) -> pa.Array:
    """``values`` as a non-null Arrow string array: None → '', other values through
    ``convert`` (per value, in Python) unless the column holds only strings and Nones.

    ``scan=False`` (values decoded from JSON, so never bytes, which Arrow would take as
    strings): no type scan first, Arrow converts the column and only a column it refuses
    (a number, a lone surrogate...) takes the scanning path.

    ``values`` may be an Arrow array already (the flush's compiled log reader): a string
    array as it is, a float64 array of numeric components as :func:`_float_components`
    (its NaNs are the nulls), any other as its Python values."""
    if isinstance(values, pa.Array):
        if values.type == pa.string():
            return values.fill_null("") if values.null_count else values
        if values.type == pa.float64() and convert is _component:
            return _float_components(values)
        values = values.to_pylist()
    if not scan:
        try:
            arr = pa.array(values, type=pa.string())
        except (pa.ArrowTypeError, pa.ArrowInvalid, UnicodeEncodeError):
            return _string_array(values, convert)
        return arr.fill_null("") if arr.null_count else arr
    if not _STR_TYPES.issuperset(map(type, values)):
        strings = _number_components(values) if convert is _component else None
        if strings is not None:
            return strings
        values = [convert(v) for v in values]
    try:
        arr = pa.array(values, type=pa.string())
    except UnicodeEncodeError:  # a lone surrogate somewhere: clean the column
        arr = pa.array([None if v is None else clean_text(v) for v in values], type=pa.string())
    return arr.fill_null("") if arr.null_count else arr


_INT_TYPES = frozenset({int, type(None)})
_FLOAT_TYPES = frozenset({float, type(None)})


def _number_components(values: Sequence[Any]) -> pa.Array | None:
    """``[_component(v) for v in values]`` in Arrow for a column of ints and Nones or of
    floats and Nones (pixel positions, session numbers...); None for any other column, or
    ints beyond int64.  Exactly :func:`_fmt_number`: None, NaN and infinities → '', an
    integral float under 1e15 → its integer digits, any other float → ``repr``."""
    import pyarrow.compute as pc

    types = set(map(type, values))
    if types <= _INT_TYPES:
        try:
            ints = pa.array(values, type=pa.int64())
        except (pa.ArrowInvalid, OverflowError):
            return None
        return pc.cast(ints, pa.string()).fill_null("")
    if not types <= _FLOAT_TYPES:
        return None
    return _float_components(pa.array(values, type=pa.float64()))


def _float_components(floats: pa.Array) -> pa.Array:
    """``[_fmt_number(v) for v in floats]`` in Arrow (a null or a NaN → '')."""
    import pyarrow.compute as pc

    integral = pc.and_(pc.and_(pc.is_finite(floats), pc.less(pc.abs(floats), 1e15)),
                       pc.equal(pc.floor(floats), floats)).fill_null(False)
    digits = pc.cast(pc.cast(pc.if_else(integral, floats, 0.0), pa.int64()), pa.string())
    out = pc.if_else(integral, digits, "")
    other = pc.and_(pc.is_finite(floats), pc.invert(integral)).fill_null(False)
    if other.true_count:
        reprs = pa.array([repr(v) for v in pc.filter(floats, other).to_pylist()], type=pa.string())
        out = pc.replace_with_mask(out, other, reprs)
    return out


def _single_blob_value(name: str) -> Any:
    def convert(raw: Any) -> str | None:
        if raw is None or type(raw) is str:
            return raw
        if name == "props" and isinstance(raw, Mapping):
            return json.dumps(raw, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
        return str(raw)

    return convert


def _escaped(arr: pa.Array) -> pa.Array:
    import pyarrow.compute as pc

    if pc.any(pc.match_substring(arr, "%")).as_py():
        arr = pc.replace_substring(arr, "%", "%25")
    if pc.any(pc.match_substring(arr, "|")).as_py():
        arr = pc.replace_substring(arr, "|", "%7C")
    return arr


def _needs_escaping(joined: pa.Array, separators: int) -> bool:
    """Whether some component joined into the non-null string array ``joined`` (each row
    ``separators`` '|' between its components) holds a '%' or a '|': a '%' anywhere in the
    values, or more '|' than ``separators`` per row.  One pass of ``bytes.count`` over the
    values' bytes, not a compute kernel per character and row."""
    import pyarrow.compute as pc

    if joined.type != pa.string() or joined.null_count:
        return bool(pc.any(pc.match_substring(joined, "%")).as_py()
                    or pc.max(pc.count_substring(joined, "|")).as_py() != separators)
    _, offsets, data = joined.buffers()
    raw_offsets = memoryview(offsets)  # int32 offsets of a string array, native byte order
    start, end = (int.from_bytes(raw_offsets[4 * i: 4 * i + 4], sys.byteorder, signed=True)
                  for i in (joined.offset, joined.offset + len(joined)))
    values = data.to_pybytes()[start:end] if data is not None else b""
    return b"%" in values or values.count(b"|") != separators * len(joined)


def _rows(values: Mapping[str, Sequence[Any]], positions: list[int]) -> list[dict[str, Any]]:
    """Rows ``positions`` of the columns ``values`` (Python sequences or Arrow arrays) as dicts."""
    picked = {name: (col.take(pa.array(positions, type=pa.int64())).to_pylist() if isinstance(col, pa.Array)
                     else [col[r] for r in positions])
              for name, col in values.items()}
    return [dict(zip(picked, row, strict=True)) for row in zip(*picked.values(), strict=True)]


def _columns(events: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Sequence[Any]]:
    """``{name: [e.get(name) for e in events]}``; when every event has the same keys (the
    flusher's case) one C-level pass: itemgetter per event, then a transpose."""
    first = events[0].keys()
    if all(e.keys() == first for e in events):
        present = [k for k in names if k in first]
        out: dict[str, Sequence[Any]] = {k: [None] * len(events) for k in names if k not in first}
        if present:
            get_all = itemgetter(*present)
            rows = list(map(get_all, events))
            if len(present) == 1:
                out[present[0]] = rows
            else:
                out.update(zip(present, zip(*rows, strict=True), strict=True))
        return out
    return {k: [e.get(k) for e in events] for k in names}


_TABLE_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(
    ["timestamp", "site_id", "cut", *DOUBLE_NAMES]
    + [c for name, comps in BLOB_SPECS for c in (comps if comps is not None else (name,))]))


def encode_table(events: Sequence[Mapping[str, Any]], *, from_json: bool = False) -> pa.Table:
    """The Arrow table (:data:`ROW_SCHEMA`) of ``[encode(e) for e in events]``, in order,
    built column by column: one pass over the events per field, the escaping, joining and
    length checks in Arrow.  Rows that need a cut (a blob over 256 bytes) or carry an
    earlier cut go through :func:`encode` and are put back in place, so the result equals
    ``rows_to_table([encode(e) for e in events])`` exactly (property-tested).
    ``from_json``: as for :func:`encode_columns`."""
    if not events:
        return ROW_SCHEMA.empty_table()
    return encode_columns(_columns(events, _TABLE_FIELDS), len(events), from_json=from_json)


def _double_array(nums: Sequence[Any] | pa.Array, from_json: bool) -> pa.Array:
    """``[_double(v) for v in nums]`` as float64 (nulls may remain: the caller fills them)."""
    if isinstance(nums, pa.Array):
        if nums.type == pa.float64():
            return nums
        nums = nums.to_pylist()
    if from_json or _NUM_TYPES.issuperset(map(type, nums)):
        # JSON values Arrow takes as float64 are those float() gives the same double of
        # (numbers, bools); a string, a list or an int beyond 2**53 raises: value by value
        try:
            return pa.array(nums, type=pa.float64())
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    return pa.array([_double(v) for v in nums], type=pa.float64())


def encode_columns(values: Mapping[str, Sequence[Any]], n: int, *, from_json: bool = False) -> pa.Table:
    """:func:`encode_table` for events given as columns: ``values[name][r]`` is row ``r``'s
    value of ``name`` (a name that is absent is None for every row).

    ``from_json=True`` promises the values were decoded from JSON (str, int, float, bool,
    None, list, dict -- never bytes): columns then go to Arrow without a Python type scan
    first (same table).

    A column may also be an Arrow array (the flush's compiled log reader): strings, a
    float64 of numbers whose NaNs stand for the nulls, the int64 timestamps."""
    import pyarrow.compute as pc

    if n == 0:
        return ROW_SCHEMA.empty_table()
    missing = [name for name in _TABLE_FIELDS if name not in values]
    if missing:
        values = {**values, **{name: [None] * n for name in missing}}
    scan = not from_json
    columns: dict[str, pa.Array] = {}
    long_blobs: list[pa.Array] = []  # byte lengths of the blobs that have a row over the limit

    def over_limit(arr: pa.Array) -> None:
        lengths = pc.binary_length(arr)
        if pc.max(lengths).as_py() > BLOB_MAX_BYTES:
            long_blobs.append(lengths)

    for i, (name, comps) in enumerate(BLOB_SPECS):
        if comps is None:
            arr = _string_array(values[name], _single_blob_value(name), scan=scan)
        else:
            if i == _META_POS:  # channel | session_number | cut ('' here: rows with a cut are redone)
                parts = [_string_array(values[c], _component, scan=scan) for c in comps[:2]]
                parts.append(pa.array([""] * n, type=pa.string()))
            else:
                parts = [_string_array(values[c], _component, scan=scan) for c in comps]
            arr = pc.binary_join_element_wise(*parts, "|")
            if _needs_escaping(arr, len(parts) - 1):
                arr = pc.binary_join_element_wise(*[_escaped(p) for p in parts], "|")
        over_limit(arr)
        columns[f"blob{i + 1}"] = arr
    timestamps = values["timestamp"]
    if isinstance(timestamps, pa.Array):
        ts_arr = timestamps.cast(pa.int64())
    else:
        if not all(type(t) is int for t in timestamps):
            timestamps = [int(t) for t in timestamps]
        ts_arr = pa.array(timestamps, type=pa.int64())
    for i, name in enumerate(DOUBLE_NAMES):
        arr = _double_array(values[name], from_json)
        if arr.null_count:
            arr = arr.fill_null(math.nan)
        if i == _TS_POS:
            arr = pc.if_else(pc.is_nan(arr), pc.cast(ts_arr, pa.float64()), arr)
        columns[f"double{i + 1}"] = arr
    sites = values["site_id"]
    if isinstance(sites, pa.Array):
        sites = sites.to_pylist() if sites.type != pa.string() else sites
    elif not _STR_TYPES.issuperset(map(type, sites)):
        sites = [s if type(s) is str else str(s or "") for s in sites]
    table = pa.Table.from_arrays(
        [ts_arr.cast(pa.timestamp("ms", tz="UTC")), pa.array(sites, type=pa.string()).fill_null(""),
         *[columns[f"blob{i}"] for i in range(1, N_BLOBS + 1)],
         *[columns[f"double{i}"] for i in range(1, N_DOUBLES + 1)],
         pa.array([1] * n, type=pa.int64())],
        schema=ROW_SCHEMA,
    )
    cuts = values["cut"]
    if isinstance(cuts, pa.Array):
        cuts = cuts.to_pylist()
    if not long_blobs and not any(cuts):
        return table
    too_long = pa.array([False] * n)
    for lengths in long_blobs:
        too_long = pc.or_(too_long, pc.greater(lengths, BLOB_MAX_BYTES))
    redo = [r for r, (long_, cut) in enumerate(zip(too_long.to_pylist(), cuts, strict=True)) if long_ or cut]
    # rows needing cuts: the row-wise encoder, then every row back in its place
    slow = rows_to_table([encode(row) for row in _rows(values, redo)])
    redo_set = set(redo)
    fast_rows = [r for r in range(n) if r not in redo_set]
    merged = pa.concat_tables([table.take(pa.array(fast_rows, type=pa.int64())), slow])
    position = fast_rows + redo  # merged row k is original row position[k]
    order = sorted(range(n), key=position.__getitem__)
    return merged.take(pa.array(order, type=pa.int64()))
