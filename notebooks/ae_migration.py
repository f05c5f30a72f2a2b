import marimo

__generated_with = "0.25.2"
app = marimo.App(width="full", app_title="From Analytics Engine to clickstream-lake")


@app.cell
def _():
    import marimo as mo

    from clickstream_lake.dashboards.source import AccessError, SiteData

    return AccessError, SiteData, mo


@app.cell
def _(mo):
    mo.md(r"""
    # Coming from Analytics Engine

    Your data lands in the same shape AE gave it — `clickstream_events` with `blob1..blob20`,
    `double1..double20`, `_sample_interval` — so **the AE queries you already have run unchanged**
    (left column: AE dialect, `count()`, `countIf`, `toStartOfInterval`, `quantileExactWeighted`,
    the site filter on `blob1` …).  Next to each one (right column) is what you can now write
    instead: named columns from the decoded `events` view, one row per session in `sessions`,
    CTEs, JOINs, window functions.  Every query goes through the same tenant-scoped query layer
    (SQL guard, sandbox, result cache) as the dashboards and `POST /v1/sql`.
    """)
    return


@app.cell
def _(AccessError, SiteData, mo):
    _args = mo.cli_args()
    try:
        site = SiteData.open(site=_args.get("site"), key=_args.get("key"), data=_args.get("data"))
        _err = None
    except AccessError as _e:
        site = None
        _err = str(_e)
    mo.stop(site is None, mo.callout(mo.md(f"**No site:** {_err} (pass `-- --key csk_…` or set CLICKSTREAM_KEY)"),
                                     kind="danger"))
    mo.md(f"Site **{site.site_id}** · results cached for {site.cache_ttl_s:g} s")
    return (site,)


@app.cell
def _(site):
    S = site.site_id  # AE queries filter on blob1 themselves; the query layer enforces it anyway
    pairs = [
        (
            "UTM sources and intent (the AE article's own query)",
            f"""SELECT
    blob1 AS site_id,
    -- Extract first segment (utm_source)
    SUBSTRING(blob8, 1, POSITION('|' IN blob8) - 1) AS utm_source,
    COUNT(*) AS events,
    AVG(double1) AS avg_intent_score
FROM clickstream_events
WHERE
    blob1 = '{S}'
    AND timestamp >= NOW() - INTERVAL '7' DAY
GROUP BY blob1, utm_source
ORDER BY events DESC""",
            """-- named columns, sessions, and the conversion the AE query could not see
SELECT coalesce(nullif(utm_source, ''), '(direct)') AS utm_source,
       count(*) AS sessions,
       avg(intent) AS avg_intent,
       avg(converted::INT) AS conversion_rate,
       sum(revenue) AS revenue
FROM sessions
WHERE start >= now() - INTERVAL 7 DAY
GROUP BY ALL
ORDER BY sessions DESC""",
        ),
        (
            "Traffic per day",
            f"""SELECT toStartOfInterval(timestamp, INTERVAL '1' DAY) AS day,
       SUM(_sample_interval) AS events,
       countIf(blob4 = 'page_view') AS page_views
FROM clickstream_events
WHERE blob1 = '{S}'
GROUP BY day
ORDER BY day""",
            """-- visitors and sessions need DISTINCT over ids; a window gives the moving average
WITH daily AS (
    SELECT date_trunc('day', timestamp) AS day,
           count(DISTINCT visitor_id) AS visitors,
           count(DISTINCT session_id) AS sessions
    FROM events GROUP BY day
)
SELECT day, visitors, sessions,
       avg(visitors) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS visitors_7d_avg
FROM daily ORDER BY day""",
        ),
        (
            "Top pages",
            f"""SELECT blob5 AS page, count() AS views
FROM clickstream_events
WHERE blob1 = '{S}' AND blob4 = 'page_view'
GROUP BY page
ORDER BY views DESC
LIMIT 10""",
            """-- landing pages and what their sessions went on to do (sessions view + share of total)
SELECT entry_page,
       count(*) AS sessions,
       round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS share_pct,
       avg(converted::INT) AS conversion_rate,
       median(duration_s) AS median_duration_s
FROM sessions
WHERE entry_page IS NOT NULL
GROUP BY entry_page
ORDER BY sessions DESC
LIMIT 10""",
        ),
        (
            "Median scroll depth",
            f"""SELECT quantileExactWeighted(0.5)(double17, _sample_interval) AS median_scroll_depth
FROM clickstream_events
WHERE blob1 = '{S}' AND blob4 = 'scroll'""",
            """-- per page, with quartiles, in one pass
SELECT path,
       count(*) AS scroll_events,
       quantile_cont(scroll_depth, 0.25) AS p25,
       median(scroll_depth) AS p50,
       quantile_cont(scroll_depth, 0.75) AS p75
FROM events
WHERE event_type = 'scroll' AND NOT isnan(scroll_depth)
GROUP BY path
ORDER BY scroll_events DESC
LIMIT 10""",
        ),
        (
            "Returning visitors (AE: not expressible — no subqueries, no JOINs)",
            f"""SELECT blob2 AS visitor, count() AS events
FROM clickstream_events
WHERE blob1 = '{S}'
GROUP BY visitor
ORDER BY events DESC
LIMIT 10""",
            """-- a cohort table: visitors by first day and days since
WITH first_seen AS (
    SELECT visitor_id, min(date_trunc('day', timestamp)) AS cohort FROM events GROUP BY visitor_id
)
SELECT f.cohort,
       date_diff('day', f.cohort, date_trunc('day', e.timestamp)) AS days_later,
       count(DISTINCT e.visitor_id) AS visitors
FROM events e JOIN first_seen f USING (visitor_id)
GROUP BY ALL
ORDER BY ALL""",
        ),
    ]
    return (pairs,)


@app.cell
def _(mo, pairs, site):
    _sections = []
    ae_rows = []
    rich_rows = []
    for _title, _ae, _rich in pairs:
        _a = site.frame(_ae)
        _r = site.frame(_rich)
        ae_rows.append(_a.height)
        rich_rows.append(_r.height)
        _sections.append(mo.vstack([
            mo.md(f"### {_title}"),
            mo.hstack([
                mo.vstack([mo.md("**Analytics Engine SQL — unchanged**"), mo.md(f"```sql\n{_ae}\n```"),
                           mo.ui.table(_a, selection=None, page_size=8)]),
                mo.vstack([mo.md("**Now also possible**"), mo.md(f"```sql\n{_rich}\n```"),
                           mo.ui.table(_r, selection=None, page_size=8)]),
            ], widths="equal", gap=1.5, align="start"),
        ]))
    mo.vstack(_sections, gap=2)
    return ae_rows, rich_rows


if __name__ == "__main__":
    app.run()
