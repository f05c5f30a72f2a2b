"""The simulated event, the simulation's configuration and the timeline helpers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@dataclass(slots=True)
class SimConfig:
    """What to simulate.  Everything is deterministic given these values.

    ``end_ms`` is the end of the simulated timeline (exclusive); ``None`` means the start of
    the current UTC day, so the timeline covers the last ``days`` *full* UTC days and the
    output is identical all day long for the same seed (pass ``end_ms`` for byte-identical
    output across days).  ``visitors_per_site`` is the number of human visitors per site;
    ``None`` gives every site its own volume (about 120 visitors per day, scaled per site by a
    seeded factor between 0.3 and 3).  ``bot_share`` is the share of all events sent by bots.
    """

    sites: int = 3
    days: int = 2
    seed: int = 7
    visitors_per_site: int | None = None
    bot_share: float = 0.05
    end_ms: int | None = None
    site_ids: list[str] | None = None
    hostnames: list[str] | None = None

    def resolved_end_ms(self) -> int:
        if self.end_ms is not None:
            return int(self.end_ms)
        now = int(time.time() * 1000)
        return now - now % DAY_MS

    def site_list(self) -> list[tuple[str, str]]:
        """(site_id, tracking hostname) of every simulated site."""
        n = self.sites
        ids = list(self.site_ids) if self.site_ids else [f"site_{i + 1:02d}" for i in range(n)]
        hosts = list(self.hostnames) if self.hostnames else [f"t.site{i + 1:02d}.example" for i in range(len(ids))]
        if len(hosts) != len(ids):
            raise ValueError(f"{len(ids)} site ids but {len(hosts)} hostnames")
        if len(set(ids)) != len(ids):
            raise ValueError("site ids must be unique")
        return list(zip(ids, hosts, strict=True))

    def validate(self) -> None:
        if self.sites < 1 and not self.site_ids:
            raise ValueError("sites must be at least 1")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if not 0 <= self.bot_share < 1:
            raise ValueError("bot_share must be in [0, 1)")
        if self.visitors_per_site is not None and self.visitors_per_site < 0:
            raise ValueError("visitors_per_site must not be negative")
        self.site_list()


@dataclass(slots=True)
class SimEvent:
    """One simulated event: what a client would send, plus the ground truth about it."""

    site_id: str
    hostname: str
    send_ms: int  # when the client sends it (= body["ts"])
    body: dict[str, Any]  # one event of the tracking contract
    headers: dict[str, str]  # User-Agent, X-Forwarded-For, cf-* (shared by a visitor's events: read-only)
    visitor_key: str  # ground truth: who (stable over sessions and days)
    session_key: str  # ground truth: which session (30-minute idle gaps)
    is_bot: bool
    buyer: bool  # this session contains a purchase
    rage: bool  # this session contains a rage-click burst

    def to_json(self) -> dict[str, Any]:
        """The JSON-lines form written by ``clickstream simulate --out``."""
        return {
            "site_id": self.site_id,
            "hostname": self.hostname,
            "send_ms": self.send_ms,
            "headers": self.headers,
            "body": self.body,
            "truth": {
                "visitor": self.visitor_key,
                "session": self.session_key,
                "bot": self.is_bot,
                "buyer": self.buyer,
                "rage": self.rage,
            },
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SimEvent:
        t = obj["truth"]
        return cls(
            site_id=obj["site_id"],
            hostname=obj["hostname"],
            send_ms=int(obj["send_ms"]),
            body=obj["body"],
            headers=obj["headers"],
            visitor_key=t["visitor"],
            session_key=t["session"],
            is_bot=bool(t["bot"]),
            buyer=bool(t["buyer"]),
            rage=bool(t["rage"]),
        )


def parse_end(value: str | None) -> int | None:
    """``--end`` as ms since epoch: an ISO date or date-time (UTC unless it says otherwise),
    ``now`` (the current hour, rounded down) or ``today`` (the start of the current UTC day)."""
    if value is None or value == "":
        return None
    v = value.strip().lower()
    now = int(time.time() * 1000)
    if v == "now":
        return now - now % HOUR_MS
    if v == "today":
        return now - now % DAY_MS
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"--end must be an ISO date or date-time, 'now' or 'today' (got {value!r})") from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def day_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")
