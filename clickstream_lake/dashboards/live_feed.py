"""The dashboard's live-feed tile: a small page (shown in an iframe) that follows the site's
live stream (``/v1/stream.sse``) and lists the newest events as they arrive.

marimo does not run scripts in ``mo.Html``, so the tile is a self-contained HTML document
given to ``mo.iframe`` (served by marimo as a same-origin virtual file under the
dashboards mount).  Its script:

1. asks ``GET <mount>/stream-token`` for a short-lived stream token — the request carries
   the viewer's HttpOnly dashboard cookie, which the script itself cannot read;
2. opens ``EventSource(/v1/stream.sse?token=…&batch=1&queue=200)`` and renders ``event`` /
   ``batch`` messages newest first, keeping the last ``max_rows``; ``missed`` notices are
   summed into the status line (connected / reconnecting / missed n);
3. on any error closes the stream and, after a growing pause (1 s … 15 s), fetches a fresh
   token and reconnects.

The rows the query layer returned (the latest events in the lake) are the initial fill, and
stay on screen, marked "lake", when the stream cannot be reached.  The dashboard's
channel / device / country / campaign / page / bot filters are applied to live events in the
page (the date range and a brushed time window only shape the initial fill: live events are
"now").
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

from clickstream_lake.dashboards.metrics import Filters

MAX_ROWS = 50
STREAM_QUEUE = 200
_FILL_FIELDS = ("event_type", "path", "channel", "device_type", "country", "intent", "frustration",
                "bot_probability")


def _json_for_script(value: Any) -> str:
    """JSON safe to put inside a <script> element."""
    return (json.dumps(value, default=str).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _fill_row(row: Mapping[str, Any]) -> dict[str, Any]:
    ts = row.get("timestamp")
    if isinstance(ts, dt.datetime):
        ts_ms = int((ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)).timestamp() * 1000)
    else:
        ts_ms = None
    out: dict[str, Any] = {"ts": ts_ms, "source": "lake"}
    for name in _FILL_FIELDS:
        v = row.get(name)
        out[name] = None if v is None or (isinstance(v, float) and v != v) else v
    return out


def page_config(*, site_id: str, stream_url: str, token_url: str, filters: Filters,
                initial_rows: Iterable[Mapping[str, Any]], max_rows: int = MAX_ROWS) -> dict[str, Any]:
    """What the tile's script needs (everything it shows comes from the viewer's own site)."""
    return {
        "site_id": site_id,
        "stream_url": stream_url,
        "token_url": token_url,
        "stream_params": {"batch": "1", "queue": str(STREAM_QUEUE)},
        "max_rows": int(max_rows),
        "filters": {"channels": list(filters.channels), "devices": list(filters.devices),
                    "countries": list(filters.countries), "pages": list(filters.pages),
                    "campaigns": list(filters.campaigns), "bots": filters.bots},
        "initial": [_fill_row(r) for r in list(initial_rows)[:max_rows]],
    }


def live_feed_html(config: Mapping[str, Any]) -> str:
    """The tile's HTML document (give it to ``mo.iframe``)."""
    return _PAGE.replace("__CONFIG__", _json_for_script(dict(config)))


_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<style>
  body { font: 13px/1.35 system-ui, -apple-system, sans-serif; margin: 0; color: #1f2328; }
  #status { display: flex; gap: .6rem; align-items: center; padding: .25rem .1rem .5rem; color: #57606a; }
  #status .dot { width: .6rem; height: .6rem; border-radius: 50%; background: #bbb; display: inline-block; }
  #status[data-state="connected"] .dot { background: #1a7f37; }
  #status[data-state="reconnecting"] .dot, #status[data-state="connecting"] .dot { background: #bf8700; }
  #status[data-state="unavailable"] .dot { background: #cf222e; }
  #scroll { max-height: 30rem; overflow-y: auto; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .2rem .45rem; border-bottom: 1px solid #eaeef2; white-space: nowrap; }
  th { font-weight: 600; color: #57606a; position: sticky; top: 0; background: #fff; }
  td.path { max-width: 22rem; overflow: hidden; text-overflow: ellipsis; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  tr.live td.src { color: #1a7f37; } tr.lake td.src { color: #8c959f; }
  tr.fresh { animation: fresh 1.5s ease-out; }
  @keyframes fresh { from { background: #dafbe1; } to { background: transparent; } }
  .empty { color: #8c959f; padding: .6rem .2rem; }
</style></head>
<body>
<div id="status" data-state="connecting"><span class="dot"></span><span id="state">connecting…</span>
  <span id="counts"></span></div>
<div id="scroll"><table id="feed"><thead><tr><th>time (UTC)</th><th>type</th><th>path</th><th>country</th><th>device</th>
  <th>channel</th><th class="num">intent</th><th class="num">frustration</th><th class="num">bot %</th><th>src</th></tr></thead>
<tbody id="rows"></tbody></table></div>
<div id="empty" class="empty" hidden>No events yet.</div>
<script>
"use strict";
const CFG = __CONFIG__;
const rowsEl = document.getElementById("rows");
const statusEl = document.getElementById("status");
const stateEl = document.getElementById("state");
const countsEl = document.getElementById("counts");
const emptyEl = document.getElementById("empty");
let rows = CFG.initial.slice(0, CFG.max_rows);
let received = 0, missed = 0, source = null, retryMs = 1000, retryTimer = null;

function fmtTime(ms) {
  if (ms == null) return "";
  const d = new Date(ms);
  return isNaN(d) ? "" : d.toISOString().slice(5, 19).replace("T", " ");
}
function num(v) { return v == null || isNaN(v) ? "–" : String(Math.round(v)); }
function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
}
function render(freshCount) {
  rowsEl.replaceChildren();
  rows.forEach((r, i) => {
    const tr = document.createElement("tr");
    tr.className = r.source + (i < freshCount ? " fresh" : "");
    tr.dataset.eventType = r.event_type || "";
    cell(tr, fmtTime(r.ts)); cell(tr, r.event_type); cell(tr, r.path, "path");
    cell(tr, r.country); cell(tr, r.device_type); cell(tr, r.channel);
    cell(tr, num(r.intent), "num"); cell(tr, num(r.frustration), "num"); cell(tr, num(r.bot_probability), "num");
    cell(tr, r.source, "src");
    rowsEl.appendChild(tr);
  });
  emptyEl.hidden = rows.length > 0;
}
function setState(state, text) {
  statusEl.dataset.state = state;
  stateEl.textContent = text;
  countsEl.textContent = (received ? `· ${received} live event${received === 1 ? "" : "s"}` : "") +
                         (missed ? ` · missed ${missed}` : "");
}
function pathOf(url) {
  if (!url) return "";
  try { return new URL(url, "http://x").pathname; } catch (e) { return String(url).split("?")[0]; }
}
function globMatch(pattern, path) {
  const re = new RegExp("^" + pattern.split("*").map(s => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$");
  return re.test(path);
}
function accepted(r) {
  const f = CFG.filters;
  if (f.channels.length && !f.channels.includes(r.channel)) return false;
  if (f.devices.length && !f.devices.includes(r.device_type)) return false;
  if (f.countries.length && !f.countries.includes(r.country)) return false;
  if (f.pages.length && !f.pages.some(p => p === r.path || globMatch(p, r.path))) return false;
  if (f.campaigns.length && !f.campaigns.includes(r.utm_campaign)) return false;
  const bot = r.bot_probability;
  if (f.bots === "exclude" && bot != null && bot >= 50) return false;
  if (f.bots === "only" && !(bot != null && bot >= 50)) return false;
  return true;
}
function toRow(msg) {
  const e = msg.event || {}, s = msg.scores || {};
  return {ts: e.timestamp, source: "live", event_type: e.event_type, path: pathOf(e.url),
          channel: e.channel, device_type: e.device_type, country: e.country, utm_campaign: e.utm_campaign,
          intent: s.intent, frustration: s.frustration, bot_probability: s.bot_probability};
}
function onMessage(ev) {
  let msg;
  try { msg = JSON.parse(ev.data); } catch (e) { return; }
  let events = [];
  if (msg.type === "event") events = [msg];
  else if (msg.type === "batch") events = msg.events || [];
  else if (msg.type === "missed") { missed += msg.count || 0; setState("connected", "connected"); return; }
  else if (msg.type === "hello") { retryMs = 1000; setState("connected", "connected"); return; }
  else if (msg.type === "error") { setState("reconnecting", "stream refused: " + (msg.reason || "error")); return; }
  else return;
  const fresh = [];
  for (const m of events) {
    if (m.site_id !== CFG.site_id) continue;  // never show another site's events
    const r = toRow(m);
    received += 1;
    if (accepted(r)) fresh.push(r);
  }
  if (fresh.length) {
    fresh.reverse();  // newest first
    rows = fresh.concat(rows).slice(0, CFG.max_rows);
    render(fresh.length);
  }
  setState("connected", "connected");
}
function scheduleReconnect(why) {
  if (source) { source.close(); source = null; }
  if (retryTimer) return;
  setState(why === "unavailable" ? "unavailable" : "reconnecting",
           (why === "unavailable" ? "live stream unavailable" : "reconnecting") +
           ` (retry in ${Math.round(retryMs / 1000)} s)` + (rows.length ? " — showing the latest events from the lake" : ""));
  retryTimer = setTimeout(() => { retryTimer = null; connect(); }, retryMs);
  retryMs = Math.min(retryMs * 2, 15000);
}
async function connect() {
  setState("connecting", "connecting…");
  let grant;
  try {
    const r = await fetch(new URL(CFG.token_url, window.location.origin), {credentials: "same-origin", cache: "no-store"});
    if (!r.ok) throw new Error("token " + r.status);
    grant = await r.json();
  } catch (e) {
    scheduleReconnect("unavailable");
    return;
  }
  if (grant.site_id !== CFG.site_id) { setState("unavailable", "signed in to another site: reload the page"); return; }
  const url = new URL(grant.stream_url || CFG.stream_url, window.location.origin);
  url.searchParams.set("token", grant.token);
  for (const [k, v] of Object.entries(CFG.stream_params)) url.searchParams.set(k, v);
  source = new EventSource(url.toString());
  source.onmessage = onMessage;
  source.onerror = () => scheduleReconnect("reconnecting");
}
window.addEventListener("pagehide", () => { if (source) source.close(); });
render(0);
connect();
</script>
</body></html>
"""
