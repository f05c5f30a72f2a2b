"""Control plane: migrations, sites, hostnames, keys, config and its TTL cache, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clickstream_lake.control import config as config_mod
from clickstream_lake.control import keys as keys_mod
from clickstream_lake.control import sites as sites_mod
from clickstream_lake.control.db import ControlDB


def cli(data, *args, check=True):
    r = subprocess.run([sys.executable, "-m", "clickstream_lake", *args, "--data", str(data)],
                       capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"{args} failed: {r.stdout}\n{r.stderr}")
    return r


def test_migrations_apply_once_and_are_recorded(data_dir):
    db = ControlDB(data_dir.control_db)
    assert db.migrate() == []  # fixture already applied them
    names = db.applied_migrations()
    assert names == sorted(names) and names[0].startswith("001_")
    tables = {r["name"] for r in db.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sites", "hostnames", "api_keys", "site_config", "schema_migrations"} <= tables


def test_changed_migration_is_refused(tmp_path):
    mig = tmp_path / "m"
    mig.mkdir()
    (mig / "001_a.sql").write_text("CREATE TABLE a (x INT);\n")
    db = ControlDB(tmp_path / "c.db", migrations_dir=mig)
    assert db.migrate() == ["001_a.sql"]
    (mig / "001_a.sql").write_text("CREATE TABLE a (x INT, y INT);\n")
    with pytest.raises(Exception, match="changed after it was applied"):
        db.migrate()


def test_failed_migration_leaves_nothing(tmp_path):
    mig = tmp_path / "m"
    mig.mkdir()
    (mig / "001_a.sql").write_text("CREATE TABLE a (x INT);\nCREATE TABLE a (x INT);\n")
    db = ControlDB(tmp_path / "c.db", migrations_dir=mig)
    with pytest.raises(Exception, match="001_a.sql failed"):
        db.migrate()
    assert not db.query("SELECT name FROM sqlite_master WHERE name='a'")


def test_sites_keys_and_hostnames(data_dir):
    db = ControlDB(data_dir.control_db)
    site = sites_mod.add_site(db, "site_x", domain="Example.com", hostnames=["T.Example.com"])
    assert site.domain == "example.com" and site.hostnames == ("t.example.com",)
    assert sites_mod.site_for_hostname(db, "t.example.com:443") == "site_x"
    assert sites_mod.site_for_hostname(db, "evil.test") is None
    with pytest.raises(sites_mod.SiteError, match="already exists"):
        sites_mod.add_site(db, "site_x", domain="other.com", hostnames=[])
    with pytest.raises(sites_mod.SiteError, match="already registered"):
        sites_mod.add_site(db, "site_y", domain="y.com", hostnames=["t.example.com"])
    with pytest.raises(sites_mod.SiteError, match="invalid site id"):
        sites_mod.add_site(db, "../etc", domain="z.com", hostnames=[])
    secret, rec = keys_mod.create_key(db, "site_x", name="ci", permissions="write")
    assert secret.startswith("csk_") and rec.permissions.allows(keys_mod.Permission.READ)
    assert not rec.permissions.allows(keys_mod.Permission.ADMIN)
    stored = db.query("SELECT * FROM api_keys")[0]
    assert secret not in json.dumps(dict(stored))  # only the hash is stored
    assert keys_mod.revoke_key(db, rec.key_prefix) == 1
    assert not keys_mod.lookup_key(db, secret).active


def test_config_document_and_ttl_cache(data_dir):
    db = ControlDB(data_dir.control_db)
    sites_mod.add_site(db, "site_c", domain="c.com", hostnames=["t.c.com"], plan="pro")
    now = [0.0]
    cache = config_mod.ConfigCache(db, ttl=60, clock=lambda: now[0])
    cfg = cache.config("site_c")
    assert cfg.consent_required is False and cfg.cookie_max_age == 31536000 and len(cfg.models_enabled) == 16
    config_mod.set_config(db, "site_c", {"consent_required": "true", "models_enabled": "intent,frustration"})
    assert cache.config("site_c").consent_required is False  # still cached
    loads = cache.loads
    for _ in range(100):
        cache.config("site_c")
        cache.site_for_host("t.c.com")
    assert cache.loads <= loads + 1  # no database hit per request
    now[0] = 61
    cfg = cache.config("site_c")
    assert cfg.consent_required is True and cfg.models_enabled == ("intent", "frustration")
    with pytest.raises(ValueError, match="unknown models"):
        config_mod.set_config(db, "site_c", {"models_enabled": "mind_reading"})
    with pytest.raises(ValueError, match="unknown config keys"):
        config_mod.set_config(db, "site_c", {"colour": "blue"})


def test_cli_control_plane(tmp_path):
    data = tmp_path / "d"
    assert "applied migration" in cli(data, "init").stdout
    assert "up to date" in cli(data, "init").stdout
    cli(data, "sites", "add", "site_q", "--domain", "q.com", "--hostname", "t.q.com")
    assert "site_q" in cli(data, "sites", "list").stdout
    doc = json.loads(cli(data, "sites", "config", "site_q", "consent_required=true").stdout)
    assert doc["consent_required"] is True
    secret = cli(data, "keys", "create", "site_q", "--name", "n", "--permissions", "read").stdout.strip().splitlines()[-1]
    assert secret.startswith("csk_")
    r = cli(data, "keys", "create", "nope", "--name", "n", check=False)
    assert r.returncode == 1 and "no site" in r.stderr
    r = cli(data, "sites", "add", "site_q", "--domain", "q.com", check=False)
    assert r.returncode == 1 and "already exists" in r.stderr
