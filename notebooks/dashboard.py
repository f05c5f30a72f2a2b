import marimo

__generated_with = "0.25.2"
app = marimo.App(width="full", app_title="clickstream-lake dashboard")


@app.cell
def _():
    import datetime as dt
    from dataclasses import replace

    import altair as alt
    import marimo as mo

    from clickstream_lake.dashboards import charts, live_feed, tiles
    from clickstream_lake.dashboards.metrics import Filters
    from clickstream_lake.dashboards.source import AccessError, SiteData

    _ = alt.data_transformers.disable_max_rows()
    return AccessError, Filters, SiteData, alt, charts, dt, live_feed, mo, replace, tiles


@app.cell
def _(AccessError, SiteData, mo):
    # Who is looking.  Mounted under `clickstream serve`, the auth guard puts the viewer's
    # site (from their API key) into the request meta; standalone, `--key`/`--site`/`--data`
    # after `--` or CLICKSTREAM_KEY / CLICKSTREAM_SITE / CLICKSTREAM_DATA.
    _req = mo.app_meta().request
    _meta = dict(_req.meta or {}) if _req is not None else {}
    _args = mo.cli_args()
    try:
        if _meta.get("site_id"):
            site = SiteData.open(site=str(_meta["site_id"]), data=_meta.get("data"))
        else:
            site = SiteData.open(site=_args.get("site"), key=_args.get("key"), data=_args.get("data"))
        access_error = None
    except AccessError as _e:
        site = None
        access_error = str(_e)
    mo.stop(site is None, mo.callout(mo.md(f"**No dashboard:** {access_error}"), kind="danger"))
    return (site,)


@app.cell
def _(mo, site):
    # Tiles re-query every cache TTL: within a TTL every viewer is served from the cache.
    _ttl = max(1, int(round(site.cache_ttl_s)))
    refresh = mo.ui.refresh(options=[f"{_ttl}s", "1m", "5m"], default_interval=f"{_ttl}s",
                            label="auto-refresh")
    return (refresh,)


@app.cell
def _(dt, site, tiles):
    _span = site.table(tiles.data_range()).to_pylist()[0]
    _last = _span["last_event"].date() if _span["last_event"] else dt.datetime.now(dt.UTC).date()
    _first = _span["first_event"].date() if _span["first_event"] else _last
    last_day = _last
    first_day = min(_first, _last - dt.timedelta(days=6))
    return first_day, last_day


@app.cell
def _(dt, first_day, last_day, mo):
    date_range = mo.ui.date_range(start=first_day - dt.timedelta(days=365), stop=last_day + dt.timedelta(days=1),
                                  value=(max(first_day, last_day - dt.timedelta(days=6)), last_day),
                                  label="dates (UTC)")
    return (date_range,)


@app.cell
def _(Filters, date_range, refresh, site, tiles):
    refresh.value  # re-run on every tick
    _opts = site.table(tiles.filter_options(Filters(since=date_range.value[0], until=date_range.value[1])))
    options = {}
    for _r in _opts.to_pylist():
        options.setdefault(_r["dimension"], []).append(_r["value"])
    return (options,)


@app.cell
def _(mo, options):
    channel_pick = mo.ui.multiselect(options=options.get("channel", []), label="channel")
    device_pick = mo.ui.multiselect(options=options.get("device", []), label="device")
    country_pick = mo.ui.multiselect(options=options.get("country", []), label="country")
    bots_pick = mo.ui.dropdown(options=["include", "exclude", "only"], value="include", label="bots")
    funnel_steps = mo.ui.text(value="page_view > add_to_cart > purchase", label="funnel steps", full_width=True)
    return bots_pick, channel_pick, country_pick, device_pick, funnel_steps


@app.cell
def _(bots_pick, channel_pick, country_pick, date_range, device_pick, mo, refresh, site):
    mo.vstack([
        mo.hstack([mo.md(f"## {site.site_id} · behavioural analytics"), refresh], justify="space-between"),
        mo.hstack([date_range, channel_pick, device_pick, country_pick, bots_pick], justify="start", gap=1.5),
        mo.md("<small>Click a bar or brush the traffic chart to filter the tiles below it. "
              f"Numbers refresh every {site.cache_ttl_s:g} s (the site's query cache TTL).</small>"),
    ])
    return


@app.cell
def _(Filters, bots_pick, channel_pick, country_pick, date_range, device_pick):
    base_filters = Filters(since=date_range.value[0], until=date_range.value[1],
                           channels=tuple(channel_pick.value), devices=tuple(device_pick.value),
                           countries=tuple(country_pick.value), bots=bots_pick.value)
    return (base_filters,)


@app.cell
def _(all_filters, mo, refresh, site, tiles):
    # Headline numbers with their change against the previous period of equal length.
    refresh.value
    _rows = {r["bucket"]: r for r in site.table(tiles.kpis(all_filters)).to_pylist()}
    _cur, _prev = _rows.get("current", {}), _rows.get("previous", {})

    def _stat(key, label, fmt, *, lower_is_better=False):
        _v, _p = _cur.get(key), _prev.get(key)
        _caption, _direction = "no previous data", None
        if _v is not None and _p:
            _change = (_v - _p) / _p
            _caption = f"{_change:+.1%} vs previous period"
            _direction = "increase" if _change >= 0 else "decrease"
        return mo.stat(value=fmt(_v) if _v is not None else "–", label=label, caption=_caption,
                       direction=_direction, bordered=True,
                       target_direction="decrease" if lower_is_better else "increase")

    kpi_view = mo.hstack([
        _stat("visitors", "Visitors", lambda v: f"{v:,}"),
        _stat("sessions", "Sessions", lambda v: f"{v:,}"),
        _stat("page_views", "Page views", lambda v: f"{v:,}"),
        _stat("bounce_rate", "Bounce rate", lambda v: f"{v:.1%}", lower_is_better=True),
        _stat("median_session_duration_s", "Median session", lambda v: f"{v:,.0f} s"),
        _stat("conversion_rate", "Conversion rate", lambda v: f"{v:.2%}"),
        _stat("revenue", "Revenue", lambda v: f"{v:,.2f}"),
    ], widths="equal", gap=0.5)
    kpi_view
    return


@app.cell
def _(alt, base_filters, charts, mo, refresh, site, tiles):
    refresh.value
    _wide = site.frame(tiles.traffic(base_filters))
    traffic_bucket = tiles.time_bucket(base_filters)
    _brush = alt.selection_interval(encodings=["x"], name="time_brush")
    _chart = charts.traffic(_wide, traffic_bucket, _brush)
    traffic_chart = mo.ui.altair_chart(_chart)
    traffic_chart
    return traffic_bucket, traffic_chart


@app.cell
def _(base_filters, dt, replace, traffic_bucket, traffic_chart):
    # The brushed time window narrows every tile below the traffic chart.
    _sel = traffic_chart.value
    if _sel is not None and len(_sel) > 0:
        _step = dt.timedelta(hours=1) if traffic_bucket == "hour" else dt.timedelta(days=1)
        _lo, _hi = min(_sel["bucket"]), max(_sel["bucket"])
        time_filters = replace(base_filters, start=_lo, end=_hi + _step)
    else:
        time_filters = base_filters
    return (time_filters,)


@app.cell
def _(alt, charts, mo, refresh, site, tiles, time_filters):
    refresh.value
    _df = site.frame(tiles.channels(time_filters))
    _chart = charts.channels(_df, alt.selection_point(fields=["channel"], name="channel_pick"))
    channel_chart = mo.ui.altair_chart(_chart)
    return (channel_chart,)


@app.cell
def _(channel_chart, replace, time_filters):
    _sel = channel_chart.value
    _picked = tuple(_sel["channel"]) if _sel is not None and len(_sel) > 0 else ()
    channel_filters = replace(time_filters, channels=_picked) if _picked else time_filters
    return (channel_filters,)


@app.cell
def _(alt, channel_filters, charts, mo, refresh, site, tiles):
    refresh.value
    _df = site.frame(tiles.campaigns(channel_filters))
    _chart = charts.campaigns(_df, alt.selection_point(fields=["utm_campaign"], name="campaign_pick"))
    campaign_chart = mo.ui.altair_chart(_chart)
    return (campaign_chart,)


@app.cell
def _(campaign_chart, channel_filters, replace):
    _sel = campaign_chart.value
    _picked = tuple(_sel["utm_campaign"]) if _sel is not None and len(_sel) > 0 else ()
    campaign_filters = replace(channel_filters, campaigns=_picked) if _picked else channel_filters
    return (campaign_filters,)


@app.cell
def _(alt, campaign_filters, charts, mo, refresh, site, tiles):
    refresh.value
    _df = site.frame(tiles.top_pages(campaign_filters))
    _chart = charts.top_pages(_df, alt.selection_point(fields=["path"], name="page_pick"))
    page_chart = mo.ui.altair_chart(_chart)
    return (page_chart,)


@app.cell
def _(campaign_filters, page_chart, replace):
    _sel = page_chart.value
    _picked = tuple(_sel["path"]) if _sel is not None and len(_sel) > 0 else ()
    all_filters = replace(campaign_filters, pages=_picked) if _picked else campaign_filters
    return (all_filters,)


@app.cell
def _(campaign_chart, channel_chart, mo, page_chart):
    mo.hstack([channel_chart, campaign_chart, page_chart], widths="equal", gap=1)
    return


@app.cell
def _(all_filters, charts, mo, refresh, site, tiles):
    refresh.value
    _df = site.frame(tiles.entry_exit_pages(all_filters))
    entry_exit_view = (mo.ui.altair_chart(charts.entry_exit(_df)) if _df.height
                       else mo.md("_No sessions in this selection._"))
    entry_exit_view
    return


@app.cell
def _(all_filters, charts, mo, refresh, site, tiles):
    refresh.value
    _avg = site.frame(tiles.score_averages(all_filters))
    _dist = site.frame(tiles.score_distributions(all_filters))
    _bots = site.frame(tiles.bot_share(all_filters))
    _charts = []
    if _avg.height:
        _charts.append(charts.score_averages(_avg))
    if _dist.height:
        _charts.append(charts.score_distributions(_dist))
    if _bots.height:
        _charts.append(charts.bot_share(_bots))
    scores_view = mo.hstack(_charts, gap=1, wrap=True) if _charts else mo.md("_No scored events yet._")
    scores_view
    return


@app.cell
def _(all_filters, charts, mo, refresh, site, tiles):
    refresh.value
    _df = site.frame(tiles.frustration_hotspots(all_filters))
    if _df.height:
        hotspot_view = mo.ui.altair_chart(charts.hotspots(_df))
    else:
        hotspot_view = mo.md("_No rage or dead clicks in this selection._")
    hotspot_view
    return


@app.cell
def _(all_filters, charts, funnel_steps, mo, refresh, site, tiles):
    refresh.value
    try:
        _df = site.frame(tiles.funnel(all_filters, funnel_steps.value))
        _chart = charts.funnel(_df)
        funnel_view = mo.vstack([funnel_steps, mo.ui.altair_chart(_chart)])
    except ValueError as _e:
        funnel_view = mo.vstack([funnel_steps, mo.callout(mo.md(str(_e)), kind="warn")])
    funnel_view
    return


@app.cell
def _(mo):
    # The live stream, when this dashboard is served by `clickstream serve` (the mount puts
    # the stream's and the token route's paths into the request meta); None standalone.
    _req = mo.app_meta().request
    _meta = dict(_req.meta or {}) if _req is not None else {}
    if _meta.get("stream_url") and _meta.get("stream_token_url"):
        live_stream = {"stream_url": str(_meta["stream_url"]), "token_url": str(_meta["stream_token_url"])}
    else:
        live_stream = None
    # The live tile's filters, as state: it re-renders (and reconnects) only when the
    # filters really change, not on every refresh tick that re-runs the cells above.
    get_live_filters, set_live_filters = mo.state(None)
    return get_live_filters, live_stream, set_live_filters


@app.cell
def _(all_filters, get_live_filters, live_stream, set_live_filters):
    if live_stream is not None and get_live_filters() != all_filters:
        set_live_filters(all_filters)
    return


@app.cell
def _(get_live_filters, live_feed, live_stream, mo, site, tiles):
    # Live feed, served: the site's live stream followed in the browser (an iframe, since
    # marimo does not run scripts in mo.Html), with the latest lake events as initial fill.
    _filters = get_live_filters()
    mo.stop(live_stream is None or _filters is None)
    _fill = site.table(tiles.live_feed(_filters, rows=live_feed.MAX_ROWS)).to_pylist()
    _cfg = live_feed.page_config(site_id=site.site_id, filters=_filters, initial_rows=_fill, **live_stream)
    mo.vstack([mo.md("### Live feed — events as they arrive"),
               mo.iframe(live_feed.live_feed_html(_cfg), height="540px")])
    return


@app.cell
def _(all_filters, live_stream, mo, refresh, site, tiles):
    # Live feed, standalone (no stream server): the latest events through the query layer,
    # refreshed every TTL.
    mo.stop(live_stream is not None)
    refresh.value
    _df = site.frame(tiles.live_feed(all_filters))
    mo.vstack([mo.md("### Live feed — latest events"),
               mo.md("<small>Standalone: no live stream here; these are the latest events in the lake, "
                     "refreshed every TTL. Open the dashboard under `clickstream serve` for a live feed.</small>"),
               mo.ui.table(_df, selection=None, pagination=True, page_size=10)])
    return


if __name__ == "__main__":
    app.run()
