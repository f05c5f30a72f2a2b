"""Stream tokens (``cst_…``): site-scoped, signed, short-lived — the unit rules.  The stream
endpoints' acceptance and refusal of them is in ``tests/test_stream.py``."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickstream_lake.control import keys as keys_mod
from clickstream_lake.control.db import ControlDB
from clickstream_lake.control.stream_tokens import (
    ENV_SECRET,
    SECRET_FILE,
    StreamTokenError,
    StreamTokens,
    issuer_active,
    load_secret,
)

SECRET = b"s" * 32


def test_issue_and_verify_round_trip():
    tokens = StreamTokens(SECRET, ttl_s=60)
    token, expires = tokens.issue("site_a", "csk_abcdefgh", now_ms=1_000_000)
    assert token.startswith("cst_") and expires == 1_060_000
    claims = tokens.verify(token, now_ms=1_000_001)
    assert (claims.site_id, claims.expires_ms, claims.key_prefix) == ("site_a", 1_060_000, "csk_abcdefgh")


def test_expired_token_is_refused():
    tokens = StreamTokens(SECRET, ttl_s=60)
    token, expires = tokens.issue("site_a", "csk_abcdefgh", now_ms=1_000_000)
    tokens.verify(token, now_ms=expires - 1)
    with pytest.raises(StreamTokenError) as e:
        tokens.verify(token, now_ms=expires)
    assert e.value.reason == "expired_token"


def test_a_token_cannot_be_retargeted_or_forged():
    tokens = StreamTokens(SECRET, ttl_s=60)
    token, _ = tokens.issue("site_a", "csk_abcdefgh")
    # re-sign the payload for site_b without the secret: keep site_a's signature
    forged_payload = tokens.issue("site_b", "csk_abcdefgh")[0].split(".")[0]
    signature = token.split(".")[1]
    for bad in (f"{forged_payload}.{signature}", token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
                token.split(".")[0], "cst_", "cst_!!!.x", "csk_not-a-token",
                StreamTokens(b"o" * 32).issue("site_a", "csk_abcdefgh")[0]):
        with pytest.raises(StreamTokenError) as e:
            tokens.verify(bad)
        assert e.value.reason == "invalid_token", bad


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_arbitrary_strings_are_refused_never_crash(text):
    tokens = StreamTokens(SECRET)
    with pytest.raises(StreamTokenError):
        tokens.verify(text)
    with pytest.raises(StreamTokenError):
        tokens.verify("cst_" + text)


def test_secret_file_is_made_once_private_and_shared(data_dir, monkeypatch):
    monkeypatch.delenv(ENV_SECRET, raising=False)
    first = load_secret(data_dir)
    path = data_dir.path / SECRET_FILE
    assert len(first) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_secret(data_dir) == first  # every process on this data dir agrees
    token, _ = StreamTokens.for_data(data_dir).issue("site_a", "csk_x")
    assert StreamTokens.for_data(data_dir).verify(token).site_id == "site_a"
    monkeypatch.setenv(ENV_SECRET, "another-secret-of-enough-length")
    with pytest.raises(StreamTokenError):
        StreamTokens.for_data(data_dir).verify(token)


def test_issuer_active_follows_the_key(data_dir, tenants):
    db = ControlDB(data_dir.control_db)
    secret, rec = keys_mod.create_key(db, "site_a", name="dash", permissions="read")
    tokens = StreamTokens(SECRET)
    claims = tokens.verify(tokens.issue("site_a", rec.key_prefix)[0])
    assert issuer_active(db, claims)
    # the same prefix claimed for another site is not active there
    assert not issuer_active(db, tokens.verify(tokens.issue("site_b", rec.key_prefix)[0]))
    keys_mod.revoke_key(db, rec.key_prefix)
    assert not issuer_active(db, claims)
