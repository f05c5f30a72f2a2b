"""The SQL of every dashboard tile, built from the metric definitions and the filters.

Each function returns SQL text for one tile; the dashboard, ``clickstream report`` and the
tests run the same text through the query layer.  Every tile aggregates in DuckDB: what
reaches the browser is at most a few hundred rows (buckets, top-N lists, histogram bins,
the latest events of the live feed), never the raw event rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from clickstream_lake.dashboards.metrics import (
    BOT_THRESHOLD,
    Filters,
    metric_text,
    metrics_sql,
    scope_sql,
    sql_str,
)

SCORE_TILES: tuple[str, ...] = ("intent", "engagement", "frustration", "bot_probability")
DISTRIBUTION_SCORES: tuple[str, ...] = ("intent", "frustration", "bot_probability")
DEFAULT_FUNNEL = "page_view > add_to_cart > purchase"
RAGE_WINDOW_MS = 2_000  # a rage click: the 3rd (or later) click on one target within 2 s
RAGE_MIN_CLICKS = 3
DEAD_WINDOW_MS = 2_000  # a dead click: no page view / form / cart / purchase follows in 2 s
LIVE_FEED_ROWS = 40


def time_bucket(filters: Filters) -> str:
    """Hours for a range of up to two days, else days."""
    lo, hi = filters.window()
    return "hour" if (hi - lo).total_seconds() <= 2 * 86_400 else "day"


def kpis(filters: Filters) -> str:
    """Headline numbers for the current and the previous period (bucket current/previous)."""
    return metrics_sql(filters, "period")


def traffic(filters: Filters) -> str:
    """Visitors, sessions, page views per hour or day."""
    return metrics_sql(filters, time_bucket(filters), ["visitors", "sessions", "page_views"])


def _grouped(filters: Filters, column: str, metrics: Sequence[str], order: str, limit: int) -> str:
    """Metrics per value of ``column``: the metric files with ``bucket`` = that column."""
    inner = metrics_sql(filters, column, metrics)
    return f"SELECT bucket AS {column}, * EXCLUDE (bucket) FROM ({inner}) ORDER BY {order} DESC, {column} LIMIT {int(limit)}"


def channels(filters: Filters, limit: int = 12) -> str:
    return _grouped(filters, "channel", ["sessions", "visitors", "conversion", "revenue"], "sessions", limit)


def campaigns(filters: Filters, limit: int = 12) -> str:
    f = filters.narrowed("utm_campaign <> ''")
    return _grouped(f, "utm_campaign", ["sessions", "visitors", "conversion", "revenue"], "sessions", limit)


def top_pages(filters: Filters, limit: int = 15) -> str:
    f = filters.narrowed("event_type = 'page_view'")
    return _grouped(f, "path", ["page_views", "visitors"], "page_views", limit)


def entry_exit_pages(filters: Filters, limit: int = 10) -> str:
    """Sessions by entry page and by exit page (kind = entry | exit), top ``limit`` of each."""
    return f"""WITH scope AS (
{scope_sql(filters)}
), session_facts AS (
{metric_text('session_facts')}
), entry AS (
    SELECT 'entry' AS kind, entry_page AS path, count(*) AS sessions FROM session_facts
    WHERE entry_page IS NOT NULL GROUP BY entry_page ORDER BY sessions DESC, path LIMIT {int(limit)}
), exit AS (
    SELECT 'exit' AS kind, exit_page AS path, count(*) AS sessions FROM session_facts
    WHERE exit_page IS NOT NULL GROUP BY exit_page ORDER BY sessions DESC, path LIMIT {int(limit)}
)
SELECT * FROM entry UNION ALL SELECT * FROM exit
ORDER BY kind, sessions DESC, path"""


def score(column: str) -> str:
    """A score column with the codec's NaN ("not scored") turned into NULL."""
    _check_ident(column)
    return f"CASE WHEN isnan({column}) THEN NULL ELSE {column} END"


def score_averages(filters: Filters, scores: Sequence[str] = SCORE_TILES) -> str:
    """Average score per time bucket, long form (bucket, score, average)."""
    bucket = time_bucket(filters)
    parts = "\nUNION ALL\n".join(
        f"SELECT bucket, {sql_str(s)} AS score, avg({score(s)}) AS average FROM scope GROUP BY bucket"
        for s in scores
    )
    return f"""WITH scope AS (
{scope_sql(filters, bucket)}
)
SELECT * FROM (
{parts}
) WHERE average IS NOT NULL
ORDER BY bucket, score"""


def score_distributions(filters: Filters, scores: Sequence[str] = DISTRIBUTION_SCORES) -> str:
    """Histogram of each score in 10-point bins (score, bin, events)."""
    parts = "\nUNION ALL\n".join(
        f"SELECT {sql_str(s)} AS score, least(floor({score(s)} / 10) * 10, 90) AS bin, count(*) AS events "
        f"FROM scope WHERE {score(s)} IS NOT NULL GROUP BY bin"
        for s in scores
    )
    return f"""WITH scope AS (
{scope_sql(filters)}
)
{parts}
ORDER BY score, bin"""


def bot_share(filters: Filters) -> str:
    """Share of events (and of visitors) flagged as bots, per time bucket."""
    bucket = time_bucket(filters)
    f = replace(filters, bots="include")
    return f"""WITH scope AS (
{scope_sql(f, bucket)}
)
SELECT bucket,
       avg(CASE WHEN coalesce({score('bot_probability')}, 0) >= {BOT_THRESHOLD} THEN 1 ELSE 0 END) AS bot_event_share,
       count(*) AS events
FROM scope GROUP BY bucket ORDER BY bucket"""


def frustration_hotspots(filters: Filters, limit: int = 15) -> str:
    """Rage and dead clicks by page and click target.

    A rage click is a click that is at least the third on the same target of the same
    session within 2 s; a dead click is a click after which nothing but further clicks
    happens in that session for 2 s (no page view, form submit, add to cart or purchase).
    """
    return f"""WITH scope AS (
{scope_sql(filters)}
), ordered AS (
    SELECT session_id, path, coalesce(nullif(target, ''), '(unknown)') AS target, event_type, ts_ms,
           count(*) FILTER (WHERE event_type = 'click') OVER (
               PARTITION BY session_id, target ORDER BY ts_ms
               RANGE BETWEEN {RAGE_WINDOW_MS} PRECEDING AND CURRENT ROW) AS clicks_in_window,
           min(ts_ms) FILTER (WHERE event_type IN ('page_view', 'form_submit', 'add_to_cart', 'purchase')) OVER (
               PARTITION BY session_id ORDER BY ts_ms
               RANGE BETWEEN 1 FOLLOWING AND {DEAD_WINDOW_MS} FOLLOWING) AS next_effect_ms
    FROM scope
    WHERE session_id <> ''
), clicks AS (
    SELECT path, target,
           count(*) FILTER (WHERE clicks_in_window >= {RAGE_MIN_CLICKS}) AS rage_clicks,
           count(*) FILTER (WHERE next_effect_ms IS NULL) AS dead_clicks,
           count(*) AS clicks
    FROM ordered WHERE event_type = 'click'
    GROUP BY path, target
)
SELECT path, target, rage_clicks, dead_clicks, clicks
FROM clicks WHERE rage_clicks + dead_clicks > 0
ORDER BY rage_clicks + dead_clicks DESC, path, target
LIMIT {int(limit)}"""


@dataclass(frozen=True)
class FunnelStep:
    label: str
    predicate: str


_STEP_RE = re.compile(r"^[A-Za-z0-9_/\-.*:]+$")


def parse_funnel(spec: str) -> list[FunnelStep]:
    """``"page_view > /pricing > add_to_cart > purchase"``: event types, or paths (``/…``,
    ``*`` as a wildcard), or ``custom:<name>``.  2 to 8 steps."""
    raw = [s.strip() for s in re.split(r">|→|,", spec or "") if s.strip()]
    if not 2 <= len(raw) <= 8:
        raise ValueError("a funnel needs 2 to 8 steps, separated by '>'")
    steps = []
    for s in raw:
        if not _STEP_RE.fullmatch(s):
            raise ValueError(f"funnel step {s!r}: use an event type, a path like /pricing, or custom:<name>")
        if s.startswith("/"):
            pattern = s.replace("*", "%")
            op = "LIKE" if "%" in pattern else "="
            steps.append(FunnelStep(s, f"event_type = 'page_view' AND path {op} {sql_str(pattern)}"))
        elif s.startswith("custom:"):
            steps.append(FunnelStep(s, f"event_name = {sql_str(s.split(':', 1)[1])}"))
        else:
            steps.append(FunnelStep(s, f"event_type = {sql_str(s)}"))
    return steps


def funnel(filters: Filters, spec: str = DEFAULT_FUNNEL) -> str:
    """Sessions reaching each step in order (a step counts only after the previous one)."""
    steps = parse_funnel(spec)
    ctes = [f"scope AS (\n{scope_sql(filters)}\n)"]
    ctes.append(
        f"s1 AS (SELECT session_id, min(ts_ms) AS t FROM scope WHERE {steps[0].predicate} GROUP BY session_id)"
    )
    for i, step in enumerate(steps[1:], start=2):
        ctes.append(
            f"s{i} AS (SELECT e.session_id, min(e.ts_ms) AS t FROM scope e JOIN s{i - 1} p "
            f"ON e.session_id = p.session_id AND e.ts_ms >= p.t WHERE {step.predicate} GROUP BY e.session_id)"
        )
    selects = "\nUNION ALL\n".join(
        f"SELECT {i} AS step, {sql_str(f'{i}. {s.label}')} AS label, count(*) AS sessions FROM s{i}"
        for i, s in enumerate(steps, start=1)
    )
    return f"WITH {', '.join(ctes)}\n{selects}\nORDER BY step"


def live_feed(filters: Filters, rows: int = LIVE_FEED_ROWS) -> str:
    """The latest events (a bounded list, newest first)."""
    return f"""SELECT timestamp, event_type, path, channel, device_type, country,
       round({score('intent')}) AS intent, round({score('frustration')}) AS frustration,
       round({score('bot_probability')}) AS bot_probability
FROM ({scope_sql(filters)})
ORDER BY timestamp DESC, event_id
LIMIT {int(rows)}"""


def filter_options(filters: Filters) -> str:
    """Distinct channels, devices and countries in the date range (for the dropdowns)."""
    f = Filters(since=filters.since, until=filters.until)
    return f"""WITH scope AS ({scope_sql(f)})
SELECT 'channel' AS dimension, channel AS value, count(*) AS events FROM scope WHERE channel <> '' GROUP BY channel
UNION ALL
SELECT 'device', device_type, count(*) FROM scope WHERE device_type <> '' GROUP BY device_type
UNION ALL
SELECT 'country', country, count(*) FROM scope WHERE country <> '' GROUP BY country
ORDER BY dimension, events DESC, value"""


def data_range() -> str:
    """First and last event day of the site (to default the date picker)."""
    return "SELECT min(timestamp) AS first_event, max(timestamp) AS last_event, count(*) AS events FROM events"


def _check_ident(name: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"bad column name {name!r}")
