"""The dashboard's Altair charts, one builder per tile, shared by the marimo dashboard and
``clickstream report``.

Each builder takes the tile's (already aggregated) rows as a polars DataFrame and, for the
charts that filter the others, an optional Altair selection parameter.
"""

from __future__ import annotations

import altair as alt
import polars as pl

WIDTH = "container"


def _empty(columns: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=columns)


def traffic(wide: pl.DataFrame, bucket: str, selection=None, *, width=WIDTH) -> alt.Chart:
    long = (wide.unpivot(index="bucket", on=["visitors", "sessions", "page_views"], variable_name="metric",
                         value_name="count")
            if wide.height else _empty({"bucket": pl.Datetime("us", "UTC"), "metric": pl.Utf8, "count": pl.Int64}))
    title = f"Traffic per {bucket}" + (" — brush to zoom the other tiles" if selection is not None else "")
    chart = (
        alt.Chart(long, title=title)
        .mark_line(point=True)
        .encode(x=alt.X("bucket:T", title=None), y=alt.Y("count:Q", title=None),
                color=alt.Color("metric:N", title=None), tooltip=["bucket:T", "metric:N", "count:Q"])
        .properties(height=220, width=width)
    )
    return chart.add_params(selection) if selection is not None else chart


def _bars(df: pl.DataFrame, field: str, measure: str, title: str, colors: tuple[str, str], tooltip: list,
          selection=None, *, height: int = 220, width=WIDTH) -> alt.Chart:
    color = (alt.condition(selection, alt.value(colors[0]), alt.value(colors[1])) if selection is not None
             else alt.value(colors[0]))
    chart = (
        alt.Chart(df, title=title + (" — click to filter" if selection is not None else ""))
        .mark_bar()
        .encode(y=alt.Y(f"{field}:N", sort="-x", title=None), x=alt.X(f"{measure}:Q"), color=color, tooltip=tooltip)
        .properties(height=height, width=width)
    )
    return chart.add_params(selection) if selection is not None else chart


def channels(df: pl.DataFrame, selection=None, *, width=WIDTH) -> alt.Chart:
    return _bars(df, "channel", "sessions", "Channels (sessions)", ("#4c78a8", "#c7d3e3"),
                 ["channel", "sessions", "visitors", "conversions", alt.Tooltip("revenue:Q", format=",.2f")],
                 selection, width=width)


def campaigns(df: pl.DataFrame, selection=None, *, width=WIDTH) -> alt.Chart:
    return _bars(df, "utm_campaign", "sessions", "UTM campaigns (sessions)", ("#f58518", "#f4d3b5"),
                 ["utm_campaign", "sessions", "conversions", alt.Tooltip("revenue:Q", format=",.2f")],
                 selection, width=width)


def top_pages(df: pl.DataFrame, selection=None, *, width=WIDTH) -> alt.Chart:
    return _bars(df, "path", "page_views", "Top pages (page views)", ("#54a24b", "#c9e3c5"),
                 ["path", "page_views", "visitors"], selection, height=300, width=width)


def entry_exit(df: pl.DataFrame, *, width: int = 320) -> alt.FacetChart:
    return (
        alt.Chart(df, title="Entry and exit pages (sessions)")
        .mark_bar()
        .encode(y=alt.Y("path:N", sort="-x", title=None), x=alt.X("sessions:Q"),
                color=alt.Color("kind:N", title=None, scale=alt.Scale(range=["#72b7b2", "#e45756"])),
                tooltip=["kind", "path", "sessions"])
        .properties(width=width)
        .facet(column=alt.Column("kind:N", title=None))
        .resolve_scale(y="independent")
    )


def score_averages(df: pl.DataFrame, *, width: int = 380) -> alt.Chart:
    return alt.Chart(df, title="Score averages").mark_line(point=True).encode(
        x=alt.X("bucket:T", title=None), y=alt.Y("average:Q", scale=alt.Scale(domain=[0, 100])),
        color=alt.Color("score:N", title=None),
        tooltip=["bucket:T", "score", alt.Tooltip("average:Q", format=".1f")],
    ).properties(height=200, width=width)


def score_distributions(df: pl.DataFrame, *, width: int = 380) -> alt.Chart:
    return alt.Chart(df, title="Score distributions (events per 10-point bin)").mark_bar().encode(
        x=alt.X("bin:O", title="score"), y=alt.Y("events:Q"), color=alt.Color("score:N", title=None),
        xOffset="score:N", tooltip=["score", "bin", "events"],
    ).properties(height=200, width=width)


def bot_share(df: pl.DataFrame, *, width: int = 300) -> alt.Chart:
    return alt.Chart(df, title="Bot share of events").mark_area(opacity=0.6, color="#b279a2").encode(
        x=alt.X("bucket:T", title=None), y=alt.Y("bot_event_share:Q", axis=alt.Axis(format="%"), title=None),
        tooltip=["bucket:T", alt.Tooltip("bot_event_share:Q", format=".1%"), "events"],
    ).properties(height=200, width=width)


def hotspots(df: pl.DataFrame, *, width=WIDTH) -> alt.Chart:
    long = df.unpivot(index=["path", "target"], on=["rage_clicks", "dead_clicks"], variable_name="kind",
                      value_name="clicks_of_kind")
    long = long.with_columns((long["path"] + "  ›  " + long["target"]).alias("spot"))
    return (
        alt.Chart(long, title="Frustration hotspots: rage and dead clicks by page and target")
        .mark_bar()
        .encode(y=alt.Y("spot:N", sort="-x", title=None), x=alt.X("clicks_of_kind:Q", title="clicks"),
                color=alt.Color("kind:N", title=None, scale=alt.Scale(range=["#e45756", "#9d755d"])),
                tooltip=["path", "target", "kind", "clicks_of_kind"])
        .properties(height=260, width=width)
    )


def funnel(df: pl.DataFrame, *, width=WIDTH) -> alt.Chart:
    first = max(int(df["sessions"][0]), 1) if df.height else 1
    df = df.with_columns((df["sessions"] / first).alias("share"))
    return (
        alt.Chart(df, title="Funnel (sessions reaching each step, in order)")
        .mark_bar(color="#4c78a8")
        .encode(x=alt.X("label:N", sort=None, title=None), y=alt.Y("sessions:Q"),
                tooltip=["label", "sessions", alt.Tooltip("share:Q", format=".1%")])
        .properties(height=240, width=width)
    )
