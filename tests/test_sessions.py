"""Session rules, incremental features, the bounded store and rebuild-after-restart."""

from __future__ import annotations

import math

import pytest

from clickstream_lake import codec
from clickstream_lake.control.config import SiteConfig
from ingest_worker.events import RequestInfo, TrackedEvent, to_row_values
from ingest_worker.scoring import Scorer, score
from ingest_worker.scoring.features import CART, CHECKOUT, PRICING, PRODUCT, classify_url, observe
from ingest_worker.sessions import SESSION_IDLE_MS, SessionStore, VisitorState, event_from_row

T0 = 1_790_000_000_000
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
CFG = SiteConfig(site_id="site_a", domain="shop.test", hostnames=("t.alpha.test",))


def ev(t: int, typ: str = "page_view", url: str = "/", *, vid: str = "v_" + "1" * 32, **kw) -> TrackedEvent:
    req = RequestInfo(site_id="site_a", received_ms=t, user_agent=kw.pop("ua", UA), ip="192.0.2.1")
    kw.setdefault("screen", "1920x1080")
    return TrackedEvent(type=typ, ts_ms=t, event_id=f"e{t}", url=url, request=req, visitor_id=vid, **kw)


def run(events: list[TrackedEvent]) -> VisitorState:
    state = None
    for e in events:
        _, state = score(e, state)
    assert state is not None
    return state


# -- session rules -----------------------------------------------------------------------------------------
def test_new_session_after_30_minutes_idle():
    a, b, c = ev(T0), ev(T0 + SESSION_IDLE_MS), ev(T0 + 2 * SESSION_IDLE_MS + 1)
    run([a, b, c])
    assert a.session_id == b.session_id != c.session_id
    assert (a.session_number, b.session_number, c.session_number) == (1, 1, 2)
    assert a.session_id.startswith("s_")


def test_new_session_at_24_hours_even_when_active():
    events = [ev(T0 + i * 20 * 60_000) for i in range(74)]  # one event every 20 min for ~24.3 h
    run(events)
    numbers = [e.session_number for e in events]
    assert numbers[71] == 1 and numbers[72] == 2  # 72 × 20 min = 24 h


def test_new_campaign_starts_a_new_session_but_plain_events_do_not():
    a = ev(T0, utm_source="google", utm_campaign="spring")
    b = ev(T0 + 60_000, "click")  # no campaign: same session
    c = ev(T0 + 120_000, utm_source="google", utm_campaign="spring")  # same campaign: same session
    d = ev(T0 + 180_000, utm_source="newsletter", utm_campaign="june")  # new campaign
    e = ev(T0 + 240_000, gclid="abc")  # a click id is a campaign too
    run([a, b, c, d, e])
    assert a.session_id == b.session_id == c.session_id
    assert len({c.session_id, d.session_id, e.session_id}) == 3
    assert (d.session_number, e.session_number) == (2, 3)


def test_channel_is_set_at_session_start_and_internal_referrers_are_not_referrals():
    a = ev(T0, referrer="https://www.google.com/search?q=x")
    b = ev(T0 + 1000, "page_view", "/pricing", referrer="https://t.alpha.test/")
    _, state = score(a, None, own_hosts=frozenset({"t.alpha.test"}))
    score(b, state, own_hosts=frozenset({"t.alpha.test"}))
    assert a.channel == b.channel == "Organic Search"
    internal = ev(T0, referrer="https://t.alpha.test/page")
    score(internal, None, own_hosts=frozenset({"t.alpha.test"}))
    assert internal.channel == "Direct"
    paid = ev(T0, gclid="x")
    score(paid, None)
    assert paid.channel == "Paid Search"


# -- features -------------------------------------------------------------------------------------------------
def clicks(t: int, spots: list[tuple[int, float, float]]) -> list[TrackedEvent]:
    return [ev(t + dt, "click", x=x, y=y, target="button#buy") for dt, x, y in spots]


def test_rage_clicks_need_three_clicks_within_1000ms_and_30px():
    rage = run([ev(T0)] + clicks(T0 + 5000, [(0, 100, 100), (300, 110, 105), (600, 105, 120)]))
    assert (rage.rage_bursts, rage.rage_clicks, rage.clicks) == (1, 3, 3)
    longer = run([ev(T0)] + clicks(T0 + 5000, [(0, 100, 100), (300, 110, 105), (600, 105, 120), (900, 100, 100)]))
    assert (longer.rage_bursts, longer.rage_clicks) == (1, 4)
    slow = run([ev(T0)] + clicks(T0 + 5000, [(0, 100, 100), (600, 100, 100), (1200, 100, 100)]))
    assert slow.rage_clicks == 0  # three clicks span 1200 ms
    spread = run([ev(T0)] + clicks(T0 + 5000, [(0, 100, 100), (200, 140, 100), (400, 100, 100)]))
    assert spread.rage_clicks == 0  # one click 40 px away
    two_bursts = run([ev(T0)] + clicks(T0 + 5000, [(0, 10, 10), (100, 10, 10), (200, 10, 10), (5000, 10, 10),
                                                   (5100, 10, 10), (5200, 10, 10)]))
    assert (two_bursts.rage_bursts, two_bursts.rage_clicks) == (2, 6)


def test_rage_clicks_without_coordinates_use_the_target():
    same = [ev(T0 + i * 200, "click", target="a.menu") for i in range(3)]
    assert run(same).rage_clicks == 3
    other = [ev(T0 + i * 200, "click", target=f"a.menu{i}") for i in range(3)]
    assert run(other).rage_clicks == 0


def test_dead_clicks_errors_back_and_forth_and_reloads():
    s = run([
        ev(T0, url="/a"), ev(T0 + 1000, url="/b"), ev(T0 + 2000, url="/a"),  # A → B → A
        ev(T0 + 3000, url="/a"),  # reload
        ev(T0 + 4000, "click", props={"dead": True}), ev(T0 + 5000, "click", target="div.card[dead]"),
        ev(T0 + 6000, "click", props={"dead": False}), ev(T0 + 7000, "error", name="TypeError"),
    ])
    assert (s.back_forth, s.reloads, s.dead_clicks, s.errors, s.clicks) == (1, 1, 2, 1, 3)


@pytest.mark.parametrize(("url", "bits"), [
    ("/pricing", PRICING), ("/plans/team?x=1", PRICING), ("/products/shoe-1", PRODUCT), ("/p/123", PRODUCT),
    ("/cart", CART), ("/basket/", CART), ("/checkout/payment", CHECKOUT), ("/blog/pricing-strategy", 0),
    ("/", 0), ("/about", 0),
])
def test_page_classes(url, bits):
    assert classify_url(url)[0] & (PRICING | PRODUCT | CART | CHECKOUT) == bits


def test_funnel_counts_purchases_and_visitor_totals_fold_at_session_end():
    s = run([ev(T0, url="/products/a"), ev(T0 + 1000, url="/pricing"), ev(T0 + 2000, url="/cart"),
             ev(T0 + 3000, "add_to_cart", value=20.0), ev(T0 + 4000, url="/checkout"),
             ev(T0 + 5000, "purchase", value=49.5, order_id="o1"), ev(T0 + 6000, "purchase", value=10.0)])
    assert (s.product, s.pricing, s.cart, s.checkout, s.add_to_cart, s.purchases, s.value) == (1, 1, 1, 1, 1, 2, 59.5)
    observe(s, ev(T0 + 10 * 86_400_000, url="/"))  # ten days later: a new session
    assert s.session_number == 2 and s.purchases == 0 and s.prev_purchases == 2 and s.prev_value == 59.5
    assert s.prev_intent_visits == 4 and s.prev_pageviews == 4 and s.pageviews == 1
    assert s.prev_session_end_ms == T0 + 6000


def test_engaged_time_scroll_and_timing_regularity():
    s = run([ev(T0, url="/a"), ev(T0 + 10_000, "scroll", scroll_depth=40.0), ev(T0 + 20_000, "scroll", scroll_depth=80.0),
             ev(T0 + 30_000, "engagement", time_on_page_ms=30_000.0), ev(T0 + 40_000, url="/b")])
    assert s.engaged_ms == 40_000 and s.scroll_sum == 80.0 and s.page_scroll == 0.0 and s.top_sum == 30_000.0
    # regularity is measured between actions: the engagement heartbeat is left out (gaps 10 s, 10 s, 20 s)
    assert s.gap_n == 3 and s.gap_cv == pytest.approx(math.sqrt(100 / 3) / (40 / 3), rel=1e-9)
    regular = run([ev(T0 + i * 2000, "page_view", f"/p/{i}") for i in range(6)])
    assert regular.gap_cv == pytest.approx(0.0)
    irregular = run([ev(T0 + t) for t in (0, 1_000, 30_000, 32_000, 200_000)])
    assert irregular.gap_cv > 1.0


def test_out_of_order_events_do_not_move_time_backwards():
    s = run([ev(T0 + 10_000), ev(T0, "click"), ev(T0 + 11_000, "click")])
    assert s.last_ms == T0 + 11_000 and s.session_number == 1


# -- store -----------------------------------------------------------------------------------------------------
def test_store_is_an_lru_with_idle_expiry():
    store = SessionStore(max_visitors=3, idle_ms=1000)
    for i in range(4):
        st = VisitorState(f"v{i}", "s")
        st.last_ms = 100 + i
        store.put(st, 100 + i)
    assert len(store) == 3 and store.get("s", "v0", 200) is None and store.evictions == 1
    assert store.get("s", "v1", 200) is not None  # touch v1: now v2 is the coldest
    fresh = VisitorState("v9", "s")
    fresh.last_ms = 300
    store.put(fresh, 300)
    assert store.get("s", "v2", 300) is None and store.get("s", "v1", 300) is not None
    assert store.get("s", "v1", 100 + 1 + 1001) is None  # idle past 1000 ms: expired on access
    assert store.expirations >= 1
    # expired states are swept from the cold end on put
    late = VisitorState("v10", "s")
    late.last_ms = 10_000
    store.put(late, 10_000)
    assert len(store) <= 2
    # states are per site
    assert store.get("other-site", "v10", 10_000) is None


# -- rebuild after restart ------------------------------------------------------------------------------------------
def journey(vid: str, t0: int) -> list[TrackedEvent]:
    return [
        ev(t0, url="/?utm_source=news&utm_medium=email", utm_source="news", utm_medium="email", vid=vid,
           referrer="https://mail.example.net/"),
        ev(t0 + 15_000, "scroll", scroll_depth=55.5, vid=vid),
        ev(t0 + 30_000, url="/pricing", vid=vid, title="Pricing | Shop"),
        ev(t0 + 40_000, "click", x=10.5, y=20.25, target="a.plan|pro", vid=vid),
        ev(t0 + 40_300, "click", x=12, y=21, target="a.plan|pro", vid=vid),
        ev(t0 + 40_600, "click", x=11, y=22, target="a.plan|pro", vid=vid, props={"dead": True}),
        ev(t0 + 60_000, "engagement", time_on_page_ms=29_000.0, vid=vid),
        ev(t0 + 70_000, url="/reviews", vid=vid),
        ev(t0 + 80_000, url="/cart", vid=vid),
        ev(t0 + 85_000, "add_to_cart", value=30.0, currency="EUR", vid=vid),
        ev(t0 + 3_600_000, url="/products/x", vid=vid, referrer="https://t.alpha.test/"),  # session 2
        ev(t0 + 3_610_000, "error", name="ReferenceError", vid=vid),
        ev(t0 + 3_620_000, "purchase", value=99.0, order_id="o-1", vid=vid),
    ]


def same_state(a: VisitorState, b: VisitorState) -> None:
    da, db = a.as_dict(), b.as_dict()
    for k in da:
        va, vb = da[k], db[k]
        if isinstance(va, float) and math.isnan(va):
            assert isinstance(vb, float) and math.isnan(vb), k
        else:
            assert va == vb, (k, va, vb)


def test_rebuild_from_lake_rows_gives_the_live_state_and_scores():
    live = Scorer(secret=b"s")
    rows = []
    for e in journey("", T0):
        e.request.cookie_visitor_id = "v_" + "9" * 32  # a cookie visitor
        live.process(e, CFG)
        # what the lake holds: the encoded AE row, decoded again
        rows.append(codec.decode(codec.encode(to_row_values(e))))
    restarted = Scorer(secret=b"s")
    assert restarted.rebuild(rows) == 1
    vid = "v_" + "9" * 32
    same_state(live.store.get("site_a", vid, T0 + 3_620_000), restarted.store.get("site_a", vid, T0 + 3_620_000))
    # the next event scores the same on both
    nxt = [ev(T0 + 3_630_000, url="/checkout"), ev(T0 + 3_630_000, url="/checkout")]
    for e in nxt:
        e.request.cookie_visitor_id = vid
    a, b = live.process(nxt[0], CFG), restarted.process(nxt[1], CFG)
    assert a == b and a["intent"] > 0
    assert nxt[0].session_id == nxt[1].session_id and nxt[0].session_number == nxt[1].session_number == 2


def test_replay_gives_back_the_rows_session_ids_and_channel():
    events = journey("v_" + "7" * 32, T0)
    live_ids = []
    state = None
    for e in events:
        _, state = score(e, state, own_hosts=frozenset({"t.alpha.test"}))
        live_ids.append((e.session_id, e.session_number, e.channel))
    rows = [codec.decode(codec.encode(to_row_values(e))) for e in events]
    replayed = [event_from_row(r) for r in rows]
    rebuilt = VisitorState.replay(replayed)
    assert [(e.session_id, e.session_number, e.channel) for e in replayed] == live_ids
    same_state(state, rebuilt)


def test_rebuild_groups_rows_of_many_visitors():
    rows = []
    for i in range(5):
        for e in journey(f"v_{i:032x}", T0 + i * 1000):
            rows.append(codec.decode(codec.encode(to_row_values(e))))
    rows.sort(key=lambda r: r["timestamp"])
    store = SessionStore()
    assert store.rebuild(rows) == 5
    st = store.get("site_a", f"v_{3:032x}", T0 + 3_620_000 + 3000)
    assert st is not None and st.session_number == 2 and st.prev_intent_visits == 2
