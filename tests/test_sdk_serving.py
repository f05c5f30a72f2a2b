"""Serving the browser SDK: cache headers, ETag revalidation, gzip/brotli negotiation, the
per-site settings written into the script, and the size budget."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess

import brotli
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickstream_lake.control import config as config_mod
from clickstream_lake.control.db import ControlDB
from ingest_worker.sdk import (
    CACHE_CONTROL,
    SITE_TOKEN,
    SdkAsset,
    choose_encoding,
    parse_accept_encoding,
    parse_if_none_match,
    read_source,
)

from .conftest import ARTIFACTS

GZIP_BUDGET = 5 * 1024  # bytes, minified + gzipped (docs/sdk.md states it)


# ---- negotiation -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("gzip", "gzip"),
        ("br", "br"),
        ("gzip, deflate, br, zstd", "br"),
        ("gzip;q=1.0, br;q=0.5", "gzip"),
        ("br;q=0, gzip", "gzip"),
        ("br;q=0, gzip;q=0", None),
        ("identity", None),
        ("*", "br"),
        ("*;q=0.2, br;q=0", "gzip"),
        ("x-gzip", "gzip"),
        ("GZIP", "gzip"),
        ("br;q=nonsense, gzip;q=0.3", "gzip"),
        ("br;q=2, gzip", "gzip"),  # q out of range: the item is ignored
        ("deflate", None),
    ],
)
def test_choose_encoding(header, expected):
    assert choose_encoding(header) == expected


codings = st.sampled_from(["gzip", "br", "deflate", "identity", "*", "zstd", "x-gzip"])
qs = st.one_of(st.none(), st.sampled_from([0, 0.001, 0.1, 0.5, 0.9, 1]))


@given(st.lists(st.tuples(codings, qs), max_size=6))
def test_choose_encoding_never_picks_a_refused_coding(items):
    header = ", ".join(c if q is None else f"{c};q={q}" for c, q in items)
    accepted = parse_accept_encoding(header)
    chosen = choose_encoding(header)
    star = accepted.get("*", 0.0)
    if chosen is None:
        assert accepted.get("br", star) <= 0 and accepted.get("gzip", star) <= 0
    else:
        q = accepted.get(chosen, star)
        assert q > 0
        other = {"br": "gzip", "gzip": "br"}[chosen]
        assert q >= accepted.get(other, star)


def test_parse_if_none_match():
    assert parse_if_none_match(None) is None
    assert parse_if_none_match('"a", W/"b" ,"c"') == {'"a"', '"b"', '"c"'}
    assert parse_if_none_match("*") == {"*"}


# ---- the asset ---------------------------------------------------------------------------------

def test_asset_builds_every_encoding_of_the_same_script_once():
    asset = SdkAsset()
    sdk = asset.get()
    ident, gz, br = (sdk.representations[k] for k in (None, "gzip", "br"))
    assert gzip.decompress(gz.body) == ident.body
    assert brotli.decompress(br.body) == ident.body
    assert len({ident.etag, gz.etag, br.etag}) == 3, "strong tags must differ per content coding"
    assert asset.get() is sdk and asset.get({}) is sdk, "a variant is built once"
    text = ident.body.decode()
    assert SITE_TOKEN not in text and "const site={};" in text
    assert text.startswith("/*! clickstream SDK"), "the licence comment survives minification"
    assert "// The browser tracker" not in text, "ordinary comments are minified away"
    assert f'"{asset.version}' in ident.etag


def test_site_settings_are_written_into_the_script():
    asset = SdkAsset()
    plain = asset.get().representations[None]
    strict = asset.get({"consent_required": True, "respect_dnt": True}).representations[None]
    assert b'{"consent_required":true,"respect_dnt":true}' in strict.body
    assert strict.etag != plain.etag


def test_a_source_without_the_placeholder_is_refused():
    with pytest.raises(ValueError, match="placeholder"):
        SdkAsset(read_source().replace(SITE_TOKEN, "{}"))
    with pytest.raises(ValueError, match="VERSION"):
        SdkAsset("(function(){})()")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: cannot syntax-check the minified SDK")
def test_minified_sdk_is_valid_javascript(tmp_path):
    for settings in ({}, {"consent_required": True}):
        f = tmp_path / "sdk.min.js"
        f.write_bytes(SdkAsset().get(settings).representations[None].body)
        r = subprocess.run(["node", "--check", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_sdk_size_budget():
    """Reports the SDK's size (source, minified, gzipped, brotli) and holds it under the budget."""
    source = read_source().encode()
    reps = SdkAsset().get().representations
    sizes = {
        "source_bytes": len(source),
        "source_gzip_bytes": len(gzip.compress(source, 9)),
        "minified_bytes": len(reps[None].body),
        "minified_gzip_bytes": len(reps["gzip"].body),
        "minified_br_bytes": len(reps["br"].body),
        "budget_gzip_bytes": GZIP_BUDGET,
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "sdk_size.json").write_text(json.dumps(sizes, indent=2))
    print("SDK size:", json.dumps(sizes))
    assert sizes["minified_bytes"] < sizes["source_bytes"]
    assert sizes["minified_gzip_bytes"] < GZIP_BUDGET, sizes


# ---- over HTTP, from a real `clickstream serve` ------------------------------------------------

def _get(url: str, path: str, host: str, **headers: str) -> tuple[httpx.Response, bytes]:
    """A GET whose body is returned exactly as sent (not decompressed)."""
    with httpx.Client(timeout=10) as c:
        with c.stream("GET", url + path, headers={"Host": host, **headers}) as r:
            raw = b"".join(r.iter_raw())
    return r, raw


def test_sdk_js_headers_encodings_and_revalidation(server, tenants):
    host = tenants["site_a"].hostname
    r, raw = _get(server.url, "/sdk.js", host, **{"Accept-Encoding": "identity"})
    assert r.status_code == 200
    assert r.headers["cache-control"] == CACHE_CONTROL
    assert "max-age=3600" in CACHE_CONTROL and "stale-while-revalidate=" in CACHE_CONTROL
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in r.headers
    assert int(r.headers["content-length"]) == len(raw)
    assert b"/v1/collect" in raw and b"clickstream:scores" in raw
    etag = r.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")

    r_gz, raw_gz = _get(server.url, "/sdk.js", host, **{"Accept-Encoding": "gzip, deflate"})
    assert r_gz.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw_gz) == raw
    assert len(raw_gz) < len(raw) / 2

    r_br, raw_br = _get(server.url, "/sdk.js", host, **{"Accept-Encoding": "gzip, deflate, br"})
    assert r_br.headers["content-encoding"] == "br"
    assert brotli.decompress(raw_br) == raw
    assert len({etag, r_gz.headers["etag"], r_br.headers["etag"]}) == 3

    # revalidation: the tag it holds → 304 without a body, with the caching headers again
    r304, body = _get(server.url, "/sdk.js", host, **{"Accept-Encoding": "gzip, br", "If-None-Match": r_br.headers["etag"]})
    assert r304.status_code == 304 and body == b""
    assert r304.headers["etag"] == r_br.headers["etag"]
    assert r304.headers["cache-control"] == CACHE_CONTROL and r304.headers["vary"] == "Accept-Encoding"
    # weak comparison, a list of tags, and the same script cached in another coding all match
    assert _get(server.url, "/sdk.js", host, **{"If-None-Match": f'"nope", W/{etag}'})[0].status_code == 304
    r_other, _ = _get(server.url, "/sdk.js", host, **{"Accept-Encoding": "br", "If-None-Match": r_gz.headers["etag"]})
    assert r_other.status_code == 304 and r_other.headers["etag"] == r_gz.headers["etag"]
    # a stale tag → the full script
    r_stale, raw_stale = _get(server.url, "/sdk.js", host, **{"Accept-Encoding": "identity", "If-None-Match": '"1.0.0-old"'})
    assert r_stale.status_code == 200 and raw_stale == raw

    # HEAD: same headers, no body
    h = httpx.head(server.url + "/sdk.js", headers={"Host": host, "Accept-Encoding": "identity"})
    assert h.status_code == 200 and h.headers["etag"] == etag and h.content == b""

    # an unknown host gets the default script (no site settings written in)
    r_any, raw_any = _get(server.url, "/sdk.js", "127.0.0.1", **{"Accept-Encoding": "identity"})
    assert r_any.status_code == 200 and b"const site={};" in raw_any

    metrics = httpx.get(server.url + "/metrics").text
    assert 'clickstream_sdk_requests_total{encoding="br",status="200"}' in metrics
    assert 'status="304"' in metrics


def test_versioned_sdk_url(server, tenants):
    host = tenants["site_a"].hostname
    latest, raw = _get(server.url, "/sdk.js", host, **{"Accept-Encoding": "gzip"})
    version = SdkAsset().version
    r, raw_v = _get(server.url, f"/sdk/{version}/sdk.js", host, **{"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and raw_v == raw
    assert r.headers["etag"] == latest.headers["etag"]
    assert r.headers["cache-control"] == CACHE_CONTROL
    missing = httpx.get(server.url + "/sdk/0.0.1/sdk.js", headers={"Host": host})
    assert missing.status_code == 404
    assert missing.json() == {"error": "no SDK version '0.0.1'", "available": [version]}


def test_site_privacy_settings_reach_the_script(server_factory, tenants, data_dir):
    db = ControlDB(data_dir.control_db)
    config_mod.set_config(db, "site_a", {"consent_required": True, "respect_dnt": True})
    db.close()
    srv = server_factory()
    a, raw_a = _get(srv.url, "/sdk.js", tenants["site_a"].hostname, **{"Accept-Encoding": "identity"})
    b, raw_b = _get(srv.url, "/sdk.js", tenants["site_b"].hostname, **{"Accept-Encoding": "identity"})
    assert b'const site={"consent_required":true,"respect_dnt":true}' in raw_a
    assert b"const site={}" in raw_b
    assert a.headers["etag"] != b.headers["etag"]
    # a tag of one site's variant does not revalidate the other's
    assert _get(srv.url, "/sdk.js", tenants["site_b"].hostname, **{"If-None-Match": a.headers["etag"]})[0].status_code == 200


def test_demo_hook_skips_gracefully_without_chromium(monkeypatch):
    from ingest_worker import sdk_demo

    monkeypatch.setattr(sdk_demo, "find_chromium", lambda: None)
    messages: list[str] = []
    assert sdk_demo.drive_browser_visits("http://127.0.0.1:1", "t.alpha.test", 3, log=messages.append) == 0
    assert messages and "skipped" in messages[0] and "chromium" in messages[0].lower()
