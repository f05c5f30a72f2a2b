"""The metric definitions of ``sql/metrics/`` and the filters every dashboard tile obeys.

A metric file is one ``SELECT … GROUP BY bucket`` over ``scope`` (the site's events in the
date range and filters, with a ``bucket`` column) or over ``session_facts`` (one row per
bucket and session).  :func:`metrics_sql` puts the chosen files together into ONE query, so
the headline numbers, the traffic chart, the report and the ground-truth test all compute a
metric the same way.  Everything here only builds SQL text: the query itself runs through
the tenant-scoped query layer (and its cache), see :mod:`clickstream_lake.dashboards.source`.

Filter values are rendered as escaped SQL literals, never spliced raw: equal filters give
byte-equal SQL, which is what lets the query layer's result cache serve every viewer of the
same dashboard state with one lake query per TTL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from clickstream_lake.resources import SQL_DIR

METRICS_DIR = SQL_DIR / "metrics"

# metric file -> the columns it yields (besides ``bucket``), in display order
METRIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "visitors": ("visitors",),
    "sessions": ("sessions",),
    "page_views": ("page_views",),
    "bounce": ("bounces", "bounce_rate"),
    "engaged_sessions": ("engaged_sessions", "engagement_rate"),
    "session_duration": ("median_session_duration_s",),
    "conversion": ("conversions", "conversion_rate"),
    "revenue": ("purchases", "revenue"),
}
# metric files computed over session_facts (the others read scope directly)
SESSION_METRICS = frozenset({"bounce", "engaged_sessions", "session_duration", "conversion"})
ALL_METRICS: tuple[str, ...] = tuple(METRIC_COLUMNS)

BUCKETS = ("period", "day", "hour", "all")
# columns a metric query may be grouped by instead of a time bucket (empty values -> "(none)")
DIMENSIONS = ("channel", "utm_source", "utm_medium", "utm_campaign", "path", "device_type", "country", "event_type")
BOT_THRESHOLD = 50.0  # bot_probability (0-100) at or above which an event counts as a bot's


def metric_text(name: str) -> str:
    """The SQL of one metric file (``sql/metrics/<name>.sql``), comments stripped."""
    if name != "session_facts" and name not in METRIC_COLUMNS:
        raise KeyError(f"no metric {name!r}; known: {', '.join(ALL_METRICS)}")
    text = (METRICS_DIR / f"{name}.sql").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";")


def sql_str(value: str) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def _ts(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return f"TIMESTAMPTZ {sql_str(value.astimezone(dt.UTC).strftime('%Y-%m-%d %H:%M:%S.%f+00'))}"


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Filters:
    """What the viewer picked: a UTC date range (``since`` .. ``until`` inclusive) and filters.

    Empty tuples mean "all".  ``start``/``end`` narrow the range further to a brushed time
    window; ``pages`` and ``campaigns`` come from clicked bars.  ``bots`` is ``"include"``,
    ``"exclude"`` (events with ``bot_probability`` >= 50) or ``"only"``.
    """

    since: dt.date
    until: dt.date
    channels: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    pages: tuple[str, ...] = ()
    campaigns: tuple[str, ...] = ()
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    bots: str = "include"
    extra: tuple[str, ...] = field(default=(), repr=False)  # for tests: raw predicates

    def __post_init__(self) -> None:
        if self.until < self.since:
            raise ValueError(f"date range ends ({self.until}) before it starts ({self.since})")
        if self.bots not in ("include", "exclude", "only"):
            raise ValueError("bots must be include, exclude or only")

    @classmethod
    def last_days(cls, days: int, *, today: dt.date | None = None, **kw) -> Filters:
        today = today or dt.datetime.now(dt.UTC).date()
        return cls(since=today - dt.timedelta(days=days - 1), until=today, **kw)

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    def window(self) -> tuple[dt.datetime, dt.datetime]:
        """The half-open time window [lo, hi) the filters select."""
        lo = _day_start(self.since)
        hi = _day_start(self.until + dt.timedelta(days=1))
        if self.start is not None:
            lo = max(lo, self.start if self.start.tzinfo else self.start.replace(tzinfo=dt.UTC))
        if self.end is not None:
            hi = min(hi, self.end if self.end.tzinfo else self.end.replace(tzinfo=dt.UTC))
        return lo, hi

    def previous(self) -> Filters:
        """The same filters over the period of equal length just before this one."""
        lo, hi = self.window()
        length = hi - lo
        prev_since = self.since - dt.timedelta(days=self.days)
        return replace(self, since=prev_since, until=self.since - dt.timedelta(days=1),
                       start=lo - length, end=lo)

    def predicates(self, *, with_time: bool = True) -> list[str]:
        preds: list[str] = []
        if with_time:
            lo, hi = self.window()
            preds.append(f"timestamp >= {_ts(lo)} AND timestamp < {_ts(hi)}")
        for column, values in (
            ("channel", self.channels),
            ("device_type", self.devices),
            ("country", self.countries),
            ("path", self.pages),
            ("utm_campaign", self.campaigns),
        ):
            if values:
                preds.append(f"{column} IN ({', '.join(sql_str(v) for v in sorted(set(values)))})")
        bot = "coalesce(CASE WHEN isnan(bot_probability) THEN NULL ELSE bot_probability END, 0)"
        if self.bots == "exclude":
            preds.append(f"{bot} < {BOT_THRESHOLD}")
        elif self.bots == "only":
            preds.append(f"{bot} >= {BOT_THRESHOLD}")
        preds.extend(self.extra)
        return preds

    def narrowed(self, *predicates: str) -> Filters:
        """These filters plus raw SQL predicates (used by tiles, never with user text)."""
        return replace(self, extra=(*self.extra, *predicates))

    def where(self, *, with_time: bool = True) -> str:
        preds = self.predicates(with_time=with_time)
        return " AND ".join(f"({p})" for p in preds) if preds else "TRUE"


def bucket_expr(bucket: str, filters: Filters) -> str:
    if bucket == "day":
        return "date_trunc('day', timestamp)"
    if bucket == "hour":
        return "date_trunc('hour', timestamp)"
    if bucket == "all":
        return "'all'"
    if bucket == "period":
        lo, _ = filters.window()
        return f"CASE WHEN timestamp >= {_ts(lo)} THEN 'current' ELSE 'previous' END"
    if bucket in DIMENSIONS:
        return f"coalesce(nullif({bucket}, ''), '(none)')"
    raise ValueError(f"bucket must be one of {BUCKETS + DIMENSIONS}")


def scope_sql(filters: Filters, bucket: str = "all", *, relation: str = "events") -> str:
    """``SELECT *, <bucket> AS bucket FROM events WHERE <filters>``.

    With ``bucket="period"`` the scope also covers the previous period of equal length, so
    one query yields both the current numbers and the ones to compare them with.
    """
    if bucket == "period":
        prev_lo, _ = filters.previous().window()
        _, hi = filters.window()
        where = f"timestamp >= {_ts(prev_lo)} AND timestamp < {_ts(hi)}"
        rest = filters.where(with_time=False)
        where = f"({where}) AND {rest}"
    else:
        where = filters.where()
    return f"SELECT *, {bucket_expr(bucket, filters)} AS bucket FROM {relation} WHERE {where}"


def metrics_sql(filters: Filters, bucket: str = "all", metrics: Sequence[str] = ALL_METRICS,
                *, relation: str = "events") -> str:
    """One query: a row per bucket with the columns of every metric in ``metrics``."""
    unknown = [m for m in metrics if m not in METRIC_COLUMNS]
    if unknown:
        raise KeyError(f"unknown metrics {unknown}; known: {', '.join(ALL_METRICS)}")
    ctes = [f"scope AS (\n{scope_sql(filters, bucket, relation=relation)}\n)"]
    if any(m in SESSION_METRICS for m in metrics):
        ctes.append(f"session_facts AS (\n{metric_text('session_facts')}\n)")
    ctes.append("buckets AS (SELECT DISTINCT bucket FROM scope)")
    for m in metrics:
        ctes.append(f"m_{m} AS (\n{metric_text(m)}\n)")
    cols = ", ".join(f"m_{m}.{c}" for m in metrics for c in METRIC_COLUMNS[m])
    joins = "\n".join(f"LEFT JOIN m_{m} USING (bucket)" for m in metrics)
    with_clause = ",\n".join(ctes)
    return f"WITH {with_clause}\nSELECT buckets.bucket, {cols}\nFROM buckets\n{joins}\nORDER BY buckets.bucket"


def metric_columns(metrics: Iterable[str] = ALL_METRICS) -> list[str]:
    return [c for m in metrics for c in METRIC_COLUMNS[m]]
