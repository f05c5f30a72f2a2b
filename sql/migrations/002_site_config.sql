-- The source article's KV document, one JSON object per site (read through a TTL cache).
CREATE TABLE IF NOT EXISTS site_config (
    site_id TEXT PRIMARY KEY REFERENCES sites(id) ON DELETE CASCADE,
    config TEXT NOT NULL DEFAULT '{}',
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
