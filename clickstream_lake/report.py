"""``clickstream report``: the dashboard's tiles as one static, self-contained HTML file.

Same metric SQL (``sql/metrics``), same tile queries (:mod:`clickstream_lake.dashboards.tiles`),
same Altair charts (:mod:`clickstream_lake.dashboards.charts`) as the live dashboard, through
the same query layer; each chart is rendered to inline SVG by vl-convert, so the file needs
no server, no JavaScript and no network to be read.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from clickstream_lake.dashboards import charts, tiles
from clickstream_lake.dashboards.metrics import Filters
from clickstream_lake.dashboards.source import SiteData

KPI_LABELS = (
    ("visitors", "Visitors", "{:,.0f}", False),
    ("sessions", "Sessions", "{:,.0f}", False),
    ("page_views", "Page views", "{:,.0f}", False),
    ("bounce_rate", "Bounce rate", "{:.1%}", True),
    ("median_session_duration_s", "Median session", "{:,.0f} s", False),
    ("conversion_rate", "Conversion rate", "{:.2%}", False),
    ("revenue", "Revenue", "{:,.2f}", False),
)


@dataclass
class Report:
    site_id: str
    filters: Filters
    kpis: dict[str, dict]  # "current"/"previous" -> metric -> value
    svgs: list[tuple[str, str]] = field(default_factory=list)  # (tile name, svg)
    tables: list[tuple[str, pl.DataFrame]] = field(default_factory=list)

    def html(self) -> str:
        return render_html(self)


def default_range(site: SiteData, days: int = 7) -> tuple[dt.date, dt.date]:
    """The last ``days`` days up to the site's latest event (today when it has none)."""
    span = site.table(tiles.data_range()).to_pylist()[0]
    last = span["last_event"].date() if span["last_event"] else dt.datetime.now(dt.UTC).date()
    return last - dt.timedelta(days=days - 1), last


def build_report(site: SiteData, filters: Filters, *, funnel: str = tiles.DEFAULT_FUNNEL,
                 progress: Callable[[str], None] | None = None) -> Report:
    import vl_convert as vlc

    step = progress or (lambda name: None)
    kpis = {r["bucket"]: r for r in site.table(tiles.kpis(filters)).to_pylist()}
    rep = Report(site.site_id, filters, kpis)
    bucket = tiles.time_bucket(filters)
    plan: list[tuple[str, Callable[[], object | None]]] = [
        ("traffic", lambda: charts.traffic(site.frame(tiles.traffic(filters)), bucket, width=900)),
        ("channels", lambda: charts.channels(site.frame(tiles.channels(filters)), width=420)),
        ("campaigns", lambda: charts.campaigns(site.frame(tiles.campaigns(filters)), width=420)),
        ("top pages", lambda: charts.top_pages(site.frame(tiles.top_pages(filters)), width=420)),
        ("entry and exit pages", lambda: _nonempty(site.frame(tiles.entry_exit_pages(filters)), charts.entry_exit)),
        ("score averages", lambda: _nonempty(site.frame(tiles.score_averages(filters)), charts.score_averages)),
        ("score distributions", lambda: _nonempty(site.frame(tiles.score_distributions(filters)),
                                                  charts.score_distributions)),
        ("bot share", lambda: _nonempty(site.frame(tiles.bot_share(filters)), charts.bot_share)),
        ("frustration hotspots", lambda: _nonempty(site.frame(tiles.frustration_hotspots(filters)),
                                                   lambda d: charts.hotspots(d, width=700))),
        ("funnel", lambda: charts.funnel(site.frame(tiles.funnel(filters, funnel)), width=600)),
    ]
    for name, make in plan:
        step(name)
        chart = make()
        if chart is None:
            continue
        rep.svgs.append((name, vlc.vegalite_to_svg(chart.to_dict(), vl_version=_vl_version(vlc))))
    step("latest events")
    rep.tables.append(("Latest events", site.frame(tiles.live_feed(filters, rows=20))))
    return rep


def _vl_version(vlc) -> str | None:
    """The Vega-Lite version Altair writes, if vl-convert knows it (else its default)."""
    import altair as alt

    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return major_minor if major_minor in vlc.get_vegalite_versions() else None


def _nonempty(df: pl.DataFrame, make):
    return make(df) if df.height else None


def _kpi_cells(rep: Report) -> str:
    cur, prev = rep.kpis.get("current", {}), rep.kpis.get("previous", {})
    cells = []
    for key, label, fmt, lower_better in KPI_LABELS:
        v, p = cur.get(key), prev.get(key)
        value = fmt.format(v) if v is not None else "–"
        change = ""
        if v is not None and p:
            delta = (v - p) / p
            good = (delta <= 0) if lower_better else (delta >= 0)
            change = f'<div class="chg {"up" if good else "down"}">{delta:+.1%} vs previous period</div>'
        cells.append(f'<div class="kpi"><div class="lbl">{html.escape(label)}</div>'
                     f'<div class="val">{html.escape(value)}</div>{change}</div>')
    return "\n".join(cells)


def _table_html(df: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    rows = []
    for r in df.iter_rows():
        rows.append("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in r) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_html(rep: Report) -> str:
    f = rep.filters
    scope = [f"{f.since.isoformat()} → {f.until.isoformat()} (UTC)"]
    for label, values in (("channel", f.channels), ("device", f.devices), ("country", f.countries)):
        if values:
            scope.append(f"{label}: {', '.join(values)}")
    charts_html = "\n".join(f'<figure data-tile="{html.escape(n)}">{svg}</figure>' for n, svg in rep.svgs)
    tables_html = "\n".join(f"<h2>{html.escape(t)}</h2>{_table_html(df)}" for t, df in rep.tables)
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(rep.site_id)} — clickstream-lake report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1f2933; }}
h1 {{ margin-bottom: .2rem; }} .scope {{ color: #52606d; margin-bottom: 1.5rem; }}
.kpis {{ display: grid; grid-template-columns: repeat(7, 1fr); gap: .6rem; margin-bottom: 1.5rem; }}
.kpi {{ border: 1px solid #e4e7eb; border-radius: 8px; padding: .7rem; }}
.lbl {{ font-size: .8rem; color: #52606d; }} .val {{ font-size: 1.4rem; font-weight: 600; }}
.chg {{ font-size: .75rem; }} .up {{ color: #1b7f3b; }} .down {{ color: #b00020; }}
figure {{ margin: 0 0 1.5rem; }} figure svg {{ max-width: 100%; height: auto; }}
table {{ border-collapse: collapse; font-size: .8rem; width: 100%; }}
th, td {{ border-bottom: 1px solid #e4e7eb; padding: .25rem .4rem; text-align: left; }}
footer {{ color: #7b8794; font-size: .75rem; margin-top: 2rem; }}
</style></head>
<body>
<h1>{html.escape(rep.site_id)} · behavioural analytics</h1>
<div class="scope">{html.escape(' · '.join(scope))}</div>
<section class="kpis">
{_kpi_cells(rep)}
</section>
{charts_html}
{tables_html}
<footer>Generated {generated} by clickstream report from the site's lake (metric definitions: sql/metrics).</footer>
</body></html>
"""


def write_report(site: SiteData, out: str | Path, filters: Filters, **kw) -> Path:
    rep = build_report(site, filters, **kw)
    path = Path(out)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(rep.html(), encoding="utf-8")
    tmp.replace(path)
    return path
