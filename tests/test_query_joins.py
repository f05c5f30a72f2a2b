"""What AE cannot do: JOINs with the site's own uploaded tables, and window functions.

Orders are uploaded as CSV through ``PUT /v1/tables/orders`` on a real server, CRM accounts
as Parquet through ``clickstream tables upload``; expected results are computed in Python.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.query_data import build_lake


@pytest.fixture
def joined(server_factory, tenants, data_dir, tmp_path):
    fx = build_lake(data_dir)
    ev = fx.events["site_a"]
    orders = {}
    for e in ev:
        if e["event_type"] == "purchase":
            orders[e["order_id"]] = round(e["value"] * 1.1, 2)  # the shop's own figure (with tax)
    csv = "order_id,amount,status\n" + "".join(f"{k},{v},paid\n" for k, v in orders.items())
    visitors = sorted({e["visitor_id"] for e in ev})
    plans = {v: ("enterprise" if i % 3 == 0 else "starter") for i, v in enumerate(visitors) if i % 2 == 0}
    accounts = pa.table({"visitor_id": list(plans), "plan": list(plans.values())})
    acc_path = tmp_path / "accounts.parquet"
    pq.write_table(accounts, acc_path)
    out = subprocess.run([sys.executable, "-m", "clickstream_lake", "tables", "upload", "site_a", "accounts",
                          str(acc_path), "--data", str(data_dir.path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    srv = server_factory()
    w = {"Authorization": f"Bearer {tenants['site_a'].keys['write']}"}
    r = httpx.put(srv.url + "/v1/tables/orders", content=csv, headers=w)
    assert r.status_code == 201, r.text
    assert r.json()["rows"] == len(orders)
    # a read key cannot upload; a bad file is a 400 with a reason
    rk = {"Authorization": f"Bearer {tenants['site_a'].keys['read']}"}
    assert httpx.put(srv.url + "/v1/tables/orders", content=csv, headers=rk).status_code == 403
    bad = httpx.put(srv.url + "/v1/tables/events", content=csv, headers=w)
    assert bad.status_code == 400 and "built-in" in bad.json()["error"]
    for columns in (b"a,A\n1,2\n", b"a,\n1,2\n"):  # names SQL could not tell apart, or none
        bad = httpx.put(srv.url + "/v1/tables/dupes", content=columns, headers=w)
        assert bad.status_code == 400 and "name of its own" in bad.json()["error"], bad.text
    return srv, tenants, ev, orders, plans


def sql(srv, key, text):
    r = httpx.post(srv.url + "/v1/sql", content=text, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_events_join_orders_revenue_by_channel(joined):
    srv, tenants, ev, orders, _ = joined
    expect: dict[str, float] = defaultdict(float)
    for e in ev:
        if e["event_type"] == "purchase":
            expect[e["channel"]] += orders[e["order_id"]]
    got = sql(srv, tenants["site_a"].keys["read"],
              "SELECT e.channel, round(sum(o.amount), 2) AS revenue FROM events e "
              "JOIN orders o ON o.order_id = e.order_id WHERE e.event_type = 'purchase' "
              "GROUP BY e.channel ORDER BY e.channel")
    assert [(r["channel"], r["revenue"]) for r in got] == sorted((k, round(v, 2)) for k, v in expect.items())
    # site_b cannot see site_a's tables
    r = httpx.post(srv.url + "/v1/sql", content="SELECT * FROM orders",
                   headers={"Authorization": f"Bearer {tenants['site_b'].keys['read']}"})
    assert r.status_code == 403 and r.json()["rule"] == "relation"


def test_sessions_join_crm_accounts(joined):
    srv, tenants, ev, _, plans = joined
    sessions: dict[str, dict] = {}
    for e in sorted(ev, key=lambda e: e["timestamp"]):
        s = sessions.setdefault(e["session_id"], {"visitor": e["visitor_id"], "pages": 0})
        s["pages"] += e["event_type"] == "page_view"
    expect: dict[str, list[int]] = defaultdict(list)
    for s in sessions.values():
        if s["visitor"] in plans:
            expect[plans[s["visitor"]]].append(s["pages"])
    got = sql(srv, tenants["site_a"].keys["read"],
              "SELECT a.plan, count(*) AS sessions, sum(s.pages) AS pages FROM sessions s "
              "JOIN accounts a USING (visitor_id) GROUP BY a.plan ORDER BY a.plan")
    assert [(r["plan"], r["sessions"], r["pages"]) for r in got] == sorted(
        (k, len(v), sum(v)) for k, v in expect.items())


def test_funnel_with_window_functions(joined):
    srv, tenants, ev, _, _ = joined
    # sessions whose first page view is entry step 1, that later view a product, then purchase
    by_session: dict[str, list] = defaultdict(list)
    for e in ev:
        by_session[e["session_id"]].append(e)
    product = purchase_after = 0
    for events in by_session.values():
        events.sort(key=lambda e: e["timestamp"])
        first_product = next((e["timestamp"] for e in events if e["event_type"] == "page_view"
                              and e["url"].startswith("/product")), None)
        if first_product is not None:
            product += 1
            if any(e["event_type"] == "purchase" and e["timestamp"] > first_product for e in events):
                purchase_after += 1
    got = sql(srv, tenants["site_a"].keys["read"], """
        WITH steps AS (
            SELECT session_id, timestamp, event_type,
                   min(CASE WHEN event_type = 'page_view' AND starts_with(path, '/product') THEN timestamp END)
                       OVER (PARTITION BY session_id) AS first_product,
                   row_number() OVER (PARTITION BY session_id ORDER BY timestamp) AS step
            FROM events)
        SELECT count(DISTINCT session_id) FILTER (WHERE first_product IS NOT NULL) AS product,
               count(DISTINCT session_id) FILTER (WHERE event_type = 'purchase' AND timestamp > first_product)
                   AS purchased_after
        FROM steps""")
    assert got == [{"product": product, "purchased_after": purchase_after}]
