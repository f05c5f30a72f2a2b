"""Visitor identity: cookie → SDK id → cookieless keyed hash, consent, daily salt rotation."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from clickstream_lake.control.config import SiteConfig
from ingest_worker.events import RequestInfo, TrackedEvent
from ingest_worker.identity import DAY_MS, VISITOR_ID, identity_signals, keyed_hash, resolve_visitor

SECRET = b"test-secret"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
NOON = 20_000 * DAY_MS + DAY_MS // 2  # noon UTC on day 20000
CFG = SiteConfig(site_id="site_a")
CONSENT_CFG = SiteConfig(site_id="site_a", consent_required=True)
COOKIE_ID = "v_" + "ab" * 16


def event(cookie: str = "", sdk: str = "", consent: bool | None = None, ua: str = UA, ip: str = "203.0.113.9",
          site: str = "site_a", now: int = NOON, **kw) -> TrackedEvent:
    req = RequestInfo(site_id=site, received_ms=now, user_agent=ua, ip=ip, cookie_visitor_id=cookie)
    return TrackedEvent(type="page_view", ts_ms=now, event_id="e", sdk_visitor_id=sdk, consent=consent,
                        request=req, **kw)


def test_cookie_wins_over_sdk_and_hash():
    ident = resolve_visitor(event(cookie=COOKIE_ID, sdk="v_" + "cd" * 16), CFG, SECRET, NOON)
    assert (ident.visitor_id, ident.method, ident.set_cookie) == (COOKIE_ID, "cookie", True)


def test_sdk_id_when_no_cookie_and_foreign_sdk_ids_are_mapped_stably():
    own = "v_" + "cd" * 16
    assert resolve_visitor(event(sdk=own), CFG, SECRET, NOON).visitor_id == own
    a = resolve_visitor(event(sdk="user-42"), CFG, SECRET, NOON)
    b = resolve_visitor(event(sdk="user-42", ua="other", ip="198.51.100.1"), CFG, SECRET, NOON + 3 * DAY_MS)
    c = resolve_visitor(event(sdk="user-43"), CFG, SECRET, NOON)
    assert a.method == "sdk" and a.visitor_id == b.visitor_id != c.visitor_id
    assert VISITOR_ID.fullmatch(a.visitor_id)
    # the mapping is per site: the same SDK id on another site is another visitor
    assert resolve_visitor(event(sdk="user-42", site="site_b"), CFG, SECRET, NOON).visitor_id != a.visitor_id


def test_malformed_cookie_is_ignored():
    ident = resolve_visitor(event(cookie="not-a-visitor-id"), CFG, SECRET, NOON)
    assert ident.method == "hash" and ident.visitor_id != "not-a-visitor-id"


def test_cookieless_hash_is_stable_within_a_day_and_rotates_across_days():
    a = resolve_visitor(event(), CFG, SECRET, NOON)
    b = resolve_visitor(event(), CFG, SECRET, NOON + 3_600_000)
    tomorrow = resolve_visitor(event(), CFG, SECRET, NOON + DAY_MS)
    assert a.method == "hash" and a.set_cookie  # no consent needed: the hash becomes the cookie
    assert a.visitor_id == b.visitor_id != tomorrow.visitor_id
    assert re.fullmatch(r"v_[0-9a-f]{32}", a.visitor_id)
    # the hash depends on the UA, the IP, the site and the secret
    assert resolve_visitor(event(ua=UA + "x"), CFG, SECRET, NOON).visitor_id != a.visitor_id
    assert resolve_visitor(event(ip="203.0.113.10"), CFG, SECRET, NOON).visitor_id != a.visitor_id
    assert resolve_visitor(event(site="site_b"), CFG, SECRET, NOON).visitor_id != a.visitor_id
    assert resolve_visitor(event(), CFG, b"other-secret", NOON).visitor_id != a.visitor_id


def test_yesterdays_hash_is_kept_while_its_state_lives():
    before_midnight = NOON + DAY_MS // 2 - 60_000
    after_midnight = before_midnight + 120_000
    yesterday_id = resolve_visitor(event(), CFG, SECRET, before_midnight).visitor_id
    live = {yesterday_id}
    after = resolve_visitor(event(), CFG, SECRET, after_midnight, known=live.__contains__)
    assert after.visitor_id == yesterday_id
    # with no live state for yesterday's hash, today's hash is used
    fresh = resolve_visitor(event(), CFG, SECRET, after_midnight, known=set().__contains__)
    assert fresh.visitor_id != yesterday_id
    assert fresh.visitor_id == keyed_hash("site_a", UA, "203.0.113.9", SECRET, after_midnight // DAY_MS)


def test_consent_required_without_consent_sets_no_cookie_and_ignores_ids():
    ident = resolve_visitor(event(cookie=COOKIE_ID, sdk="user-1"), CONSENT_CFG, SECRET, NOON)
    assert ident.method == "hash" and not ident.set_cookie and ident.visitor_id != COOKIE_ID
    refused = resolve_visitor(event(cookie=COOKIE_ID, consent=False), CONSENT_CFG, SECRET, NOON)
    assert refused.method == "hash" and not refused.set_cookie
    given_ = resolve_visitor(event(cookie=COOKIE_ID, consent=True), CONSENT_CFG, SECRET, NOON)
    assert (given_.visitor_id, given_.method, given_.set_cookie) == (COOKIE_ID, "cookie", True)


def test_identity_signals():
    ev = event(cookie=COOKIE_ID, hem="a" * 64, gclid="G1", fbclid="F1", msclkid="M1")
    assert identity_signals(ev) == {"cookie": COOKIE_ID, "hem": "a" * 64, "gclid": "G1", "fbclid": "F1", "msclkid": "M1"}
    assert identity_signals(event()) == {"cookie": "", "hem": "", "gclid": "", "fbclid": "", "msclkid": ""}


@settings(max_examples=200, deadline=None)
@given(ua=st.text(max_size=300), ip=st.text(max_size=60), sdk=st.text(max_size=200), cookie=st.text(max_size=140),
       consent=st.sampled_from([None, True, False]), required=st.booleans())
def test_any_input_gives_a_well_formed_id(ua, ip, sdk, cookie, consent, required):
    cfg = CONSENT_CFG if required else CFG
    ident = resolve_visitor(event(cookie=cookie, sdk=sdk, consent=consent, ua=ua, ip=ip), cfg, SECRET, NOON)
    assert VISITOR_ID.fullmatch(ident.visitor_id)
    assert ident.method in ("cookie", "sdk", "hash")
    if required and consent is not True:
        assert ident.method == "hash" and not ident.set_cookie
