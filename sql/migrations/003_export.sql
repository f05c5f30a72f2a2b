-- Customer lake export (issue 7): per-site watermark and the log of committed export objects.
-- A "target" is the export root URL (without credentials) joined with the site's namespace, so
-- that changing either starts a fresh, independent history.

-- Every window before watermark_ms has its first object committed (or was empty and recorded).
CREATE TABLE IF NOT EXISTS export_watermarks (
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    target TEXT NOT NULL,
    window_s INTEGER NOT NULL,
    watermark_ms INTEGER NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (site_id, target)
);

-- One row per exported window: how many distinct row keys (event ids, blob18) the lake held for
-- that window when it was last exported; a later, different number means late rows arrived.
CREATE TABLE IF NOT EXISTS export_windows (
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    target TEXT NOT NULL,
    window_start_ms INTEGER NOT NULL,
    window_end_ms INTEGER NOT NULL,
    lake_keys_seen INTEGER NOT NULL DEFAULT 0,
    exported_rows INTEGER NOT NULL DEFAULT 0,
    files INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (site_id, target, window_start_ms)
);

-- One row per committed object: seq 0 is events_<start>.parquet, seq N>0 is its _late<N> follow-up.
CREATE TABLE IF NOT EXISTS export_files (
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    target TEXT NOT NULL,
    window_start_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    day TEXT NOT NULL,
    key TEXT NOT NULL,
    event_count INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    exported_at TEXT NOT NULL,
    adopted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, target, window_start_ms, seq)
);
CREATE INDEX IF NOT EXISTS idx_export_files_day ON export_files(site_id, target, day);
