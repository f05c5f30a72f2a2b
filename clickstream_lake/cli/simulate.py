"""``clickstream simulate``: believable traffic for N sites, to a JSON-lines file and/or a worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import typer

from clickstream_lake.cli.common import console, err_console, fail


def truth_path_for(out: Path) -> Path:
    """``x.jsonl`` → ``x.truth.json`` (beside it)."""
    name = out.name
    for suffix in (".jsonl", ".ndjson", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return out.with_name(name + ".truth.json")


def simulate(
    sites: int = typer.Option(3, "--sites", min=1, help="Number of sites (site_01, site_02, ...)."),
    days: int = typer.Option(2, "--days", min=1, help="Days of traffic, ending at --end."),
    seed: int = typer.Option(7, "--seed", help="Random seed: same seed and --end, same output byte for byte."),
    end: str | None = typer.Option(
        None, "--end",
        help="End of the timeline: ISO date/time (UTC unless an offset is given), 'now' (current hour) or "
             "'today'. Default: the start of the current UTC day.",
    ),
    visitors: int | None = typer.Option(
        None, "--visitors", min=0, help="Human visitors per site (default: a seeded volume per site, ~120/day)."
    ),
    bot_share: float = typer.Option(0.05, "--bot-share", min=0.0, max=0.95, help="Share of events sent by bots."),
    site: list[str] = typer.Option(
        [], "--site", help="SITE_ID or SITE_ID=HOSTNAME (repeatable; replaces --sites)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write JSON lines here (one event per line)."),
    truth: Path | None = typer.Option(None, "--truth", help="Ground-truth file (default: beside --out as "
                                                               "X.truth.json, else ./simulated.truth.json)."),
    target: str | None = typer.Option(None, "--target", help="Send to a running worker, e.g. http://127.0.0.1:8787"),
    batch: int = typer.Option(20, "--batch", min=1, max=500, help="Events per request (a visitor's consecutive events)."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, max=256, help="Parallel connections for --target."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Simulate clickstream traffic (deterministic from --seed) and write it (--out) and/or send it (--target)."""
    from clickstream_lake.simulate import SimConfig, generate, parse_end, timeline
    from clickstream_lake.simulate.truth import TruthCounter

    if out is None and target is None:
        fail("nothing to do: give --out FILE and/or --target URL")
    try:
        end_ms = parse_end(end)
    except ValueError as e:
        fail(str(e))
    site_ids = hostnames = None
    if site:
        site_ids, hostnames = [], []
        for spec in site:
            sid, _, host = spec.partition("=")
            site_ids.append(sid.strip())
            hostnames.append(host.strip() or f"t.{sid.strip().replace('_', '-')}.example")
    cfg = SimConfig(sites=len(site_ids) if site_ids else sites, days=days, seed=seed, visitors_per_site=visitors,
                    bot_share=bot_share, end_ms=end_ms, site_ids=site_ids, hostnames=hostnames)
    try:
        cfg.validate()
    except ValueError as e:
        fail(str(e))
    if end_ms is None:
        cfg.end_ms = cfg.resolved_end_ms()  # fixed once, so a long run does not straddle midnight
    start_ms, stop_ms = timeline(cfg)
    truth_path = truth or (truth_path_for(out) if out else Path("simulated.truth.json"))
    counter = TruthCounter()
    show = not quiet and not as_json

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]simulating"), BarColumn(), TextColumn("{task.percentage:>3.0f}% of the timeline"),
                        TextColumn("· {task.fields[events]:,} events"), TimeElapsedColumn(),
                        console=err_console, disable=not show)
    task = progress.add_task("sim", total=max(1, stop_ms - start_ms), events=0)
    fh = None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        fh = open(out, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed below

    def stream() -> Iterator:
        n = 0
        for ev in generate(cfg):
            counter.add(ev)
            if fh is not None:
                fh.write(json.dumps(ev.to_json(), ensure_ascii=False, separators=(",", ":")))
                fh.write("\n")
            n += 1
            if n % 2000 == 0:
                progress.update(task, completed=ev.send_ms - start_ms, events=n)
            yield ev
        progress.update(task, completed=stop_ms - start_ms, events=n)

    report = None
    try:
        with progress:
            if target is None:
                for _ in stream():
                    pass
            else:
                from clickstream_lake.simulate import send

                report = send(stream(), target, batch=batch, concurrency=concurrency, progress=False)
    finally:
        if fh is not None:
            fh.close()
    result = counter.result()
    doc = {"config": {"sites": [s for s, _ in cfg.site_list()], "hostnames": [h for _, h in cfg.site_list()],
                      "days": cfg.days, "seed": cfg.seed, "visitors_per_site": cfg.visitors_per_site,
                      "bot_share": cfg.bot_share, "start_ms": start_ms, "end_ms": stop_ms},
           **result}
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    truth_path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")

    if as_json:
        print(json.dumps({"out": str(out) if out else None, "truth": str(truth_path), "totals": result["totals"],
                          "send": report.as_dict() if report else None}))
    else:
        _summary(result, out, truth_path, report)
    if report is not None and report.events and report.http_errors == report.requests:
        fail(f"every request to {target} failed: {report.errors[0] if report.errors else 'no answer'}")


def _summary(result: dict, out: Path | None, truth_path: Path, report) -> None:
    from rich.table import Table

    table = Table(title="simulated traffic (ground truth)")
    for col in ("site", "events", "visitors", "bots", "sessions", "page views", "purchases", "revenue"):
        table.add_column(col, justify="right" if col != "site" else "left")
    for sid, s in result["sites"].items():
        table.add_row(sid, f"{s['events']:,}", f"{s['visitors']:,}", f"{s['bots']:,}", f"{s['sessions']:,}",
                      f"{s['page_views']:,}", f"{s['purchases']:,}", f"{s['revenue']:,.2f}")
    console.print(table)
    if out:
        console.print(f"events: {out}")
    console.print(f"ground truth: {truth_path}")
    if report is not None:
        console.print(
            f"sent {report.events:,} events in {report.requests:,} requests ({report.events_per_s:,.0f} events/s): "
            f"accepted {report.accepted:,}, rejected {report.rejected:,}, HTTP errors {report.http_errors:,}"
        )
        for reason, n in list(report.reasons.items())[:5]:
            console.print(f"  {n:,} × {reason}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
