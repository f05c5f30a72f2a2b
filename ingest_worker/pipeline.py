"""The collect pipeline, stage by stage.

``request → tenant → rate limit → body → identity/session/scores → row → durable log → answer``

Each stage is a small function with one job; :meth:`Pipeline.collect` calls them in order
and reads top to bottom.  A request leaves the pipeline in exactly one of these ways, each
with an explicit reason (like Plausible's drop reasons):

=================  ======  =====================================================================
reason             status  meaning
=================  ======  =====================================================================
unknown_host       404     no site registered this Host (counted, nothing stored)
rate_limited       429     the site's token bucket is empty (``Retry-After`` says when)
body_too_large     413     body over 1 MB
(parse reasons)    4xx     the body or every event in it was refused (quarantined); the
                           reason classes come from :mod:`ingest_worker.normalize`
log_unavailable    503     the durable log could not store the events: nothing acknowledged
log_overloaded     503     the disk is behind by more than the queue allows
shard_unavailable  503     a scoring shard (``serve --shards N``) died or hung: nothing accepted
accepted           200     ≥ 1 event is in the durable log (rejected ones listed by index)
=================  ======  =====================================================================

An event is acknowledged only after :meth:`DurableLog.append` returned, i.e. after the
fsync of the group commit that carried it.  Retries with an ``event_id`` already
acknowledged are answered as accepted and not stored again (:class:`DedupeWindow`).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clickstream_lake.control.config import ConfigCache, SiteConfig
from ingest_worker import normalize
from ingest_worker.durable_log import DurableLog, LogOverloaded, LogWriteError
from ingest_worker.events import TrackedEvent
from ingest_worker.flusher import row_record
from ingest_worker.metrics import WorkerMetrics
from ingest_worker.quarantine import QuarantineEntry, quarantine_record
from ingest_worker.ratelimit import RateLimiter

if TYPE_CHECKING:
    from ingest_worker.shards import ShardedScoring

MAX_BODY_BYTES = normalize.MAX_BODY_BYTES  # 1 MB
MAX_BATCH = normalize.MAX_BATCH
COOKIE_NAME = "_cs_vid"

Subscriber = Callable[[str, TrackedEvent, dict[str, float]], None]


# --- what a request turns into -------------------------------------------------------------------
@dataclass
class Answer:
    """The HTTP answer the collect route sends."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    visitor_cookie: tuple[str, int] | None = None  # (visitor id, max-age) to set as first-party cookie
    accepted: list[tuple[TrackedEvent, dict[str, float]]] = field(default_factory=list)
    log_wait_s: float | None = None  # how long the accepted events waited for the durable log

    @classmethod
    def error(cls, status: int, reason: str, message: str, **extra: Any) -> Answer:
        return cls(status, {"error": message, "reason": reason, **extra})


@dataclass
class IncomingRequest:
    """The parts of an HTTP request the pipeline reads (the route fills it in)."""

    host: str
    headers: Mapping[str, str]
    client_ip: str
    received_ms: int
    body: bytes = b""
    content_type: str = ""
    query: Mapping[str, str] | None = None  # the pixel's query string instead of a body
    query_text: str = ""  # that query string as received (what quarantine keeps)


class ScoringUnavailable(Exception):
    """The "each event" stage cannot score now (a scoring shard died or hung): 503, nothing
    accepted."""


@dataclass
class Scored:
    """What the "each event" stage made of a request's events."""

    records: list[bytes] = field(default_factory=list)  # log records of the accepted events, one each
    # (event, scores) of each accepted event in event order -- for the live stream; left empty by
    # scoring shards when nobody watches the site (``records`` counts the accepted events)
    accepted: list[tuple[TrackedEvent, dict[str, float]]] = field(default_factory=list)
    last: tuple[Any, dict[str, float]] | None = None  # (event, scores) of the last accepted event
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"index", "error"} per refused event
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    reserved: list[tuple[str, str]] = field(default_factory=list)  # dedupe keys to release if not logged
    duplicates: int = 0
    cookie_ok: bool = False  # the last accepted event's identity lets the cookie be (re)set


class DedupeWindow:
    """Recently acknowledged ``(site, event_id)`` pairs, bounded (oldest forgotten first)."""

    def __init__(self, max_entries: int = 1_000_000):
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, key: tuple[str, str]) -> None:
        self._seen[key] = None
        if len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)

    def reserve(self, key: tuple[str, str]) -> bool:
        """Add ``key`` unless it is already here; True when it was added (``key not in
        self`` then ``add(key)``, in one call)."""
        seen = self._seen
        if key in seen:
            return False
        seen[key] = None
        if len(seen) > self.max_entries:
            seen.popitem(last=False)
        return True

    def discard(self, key: tuple[str, str]) -> None:
        self._seen.pop(key, None)


class ScoringStage:
    """Identity → session → scores, delegated to the scoring engine's ``Scorer``.

    Returns the event's scores and whether the visitor cookie may be (re)set (the identity
    stage says no when the site requires consent and the event has none)."""

    def __init__(self, secret: bytes | None = None) -> None:
        from ingest_worker.scoring import Scorer

        self.scorer = Scorer(secret=secret)

    def __call__(self, event: TrackedEvent, config: SiteConfig) -> tuple[dict[str, float], bool]:
        scorer = self.scorer
        scores = scorer.process(event, config)
        ident = scorer.last_identity
        return scores, bool(ident is not None and ident.set_cookie)


# --- the pipeline -------------------------------------------------------------------------------------
class Pipeline:
    def __init__(self, config: ConfigCache, log: DurableLog, metrics: WorkerMetrics, *,
                 scoring: Callable[[TrackedEvent, SiteConfig], tuple[dict[str, float], bool]] | None,
                 limiter: RateLimiter | None = None, dedupe: DedupeWindow | None = None,
                 max_body: int = MAX_BODY_BYTES, max_batch: int = MAX_BATCH, shards: ShardedScoring | None = None):
        self.config = config
        self.log = log
        self.metrics = metrics
        self.scoring = scoring
        self.limiter = limiter or RateLimiter()
        self.dedupe = dedupe or DedupeWindow()
        self.max_body = max_body
        self.max_batch = max_batch
        self.shards = shards  # a ShardedScoring: step 4 in scoring shards instead of here
        if (scoring is None) == (shards is None):
            raise ValueError("a pipeline scores either here (scoring) or in shards, one of them")

    async def collect(self, req: IncomingRequest) -> Answer:
        # 1. tenant: the Host header names the site
        site = self.tenant(req.host)
        if site is None:
            self.metrics.unknown_host.inc()
            return Answer.error(404, "unknown_host", f"no site is registered for host {req.host[:300]!r}")

        # 2. the events the body (or the pixel's query string) holds, or why it is refused
        quarantined: list[QuarantineEntry] = []
        parsed = self.parse(req)

        # 3. rate limit: one token per event (a body refused whole takes one: it is kept in
        #    quarantine, so it must not get there faster than the site's plan allows)
        refused = isinstance(parsed, normalize.Rejection)
        rate, burst = site.rate_limit()
        wait = self.limiter.take(site.site_id, 1 if refused else len(parsed), rate, burst)
        if wait <= 0 and refused:
            quarantined.append(self.quarantine_entry(site, req, parsed, raw=req.body or _query_text(req)))
            return await self.reject_all(site, req, quarantined, parsed.status, [parsed])
        if wait > 0:
            self.metrics.rate_limited.labels(site.site_id).inc()
            from ingest_worker.ratelimit import retry_after_header

            answer = Answer.error(429, "rate_limited", "too many events for this site's plan; retry later",
                                  retry_after_s=round(wait, 3))
            answer.headers["Retry-After"] = retry_after_header(wait)
            return answer

        # 4. each event: validate → identity/session/scores → AE row (here, or in the
        #    visitors' scoring shards: ingest_worker.shards)
        info = normalize.request_info(site.site_id, req.headers, req.client_ip, req.received_ms,
                                      cookie_name=COOKIE_NAME)
        if self.shards is None:
            scored = self.score_here(site, req, parsed, info)
        else:
            try:
                scored = await self.shards.score(self, site, req, parsed, info)
            except ScoringUnavailable as e:
                self.metrics.unavailable.labels("shard_unavailable").inc()
                answer = Answer.error(503, "shard_unavailable", f"{e}; nothing was accepted")
                answer.headers["Retry-After"] = "1"
                return answer
        records, quarantined = scored.records, scored.quarantined
        if not records and not scored.duplicates:
            errors = [normalize.Rejection(q.error, 400, q.reason[4:]) for q in quarantined]
            return await self.reject_all(site, req, quarantined, 400, errors, rejected=scored.rejected)

        # 5. durable log: acknowledged only once fsynced
        log_t0 = time.perf_counter()
        try:
            await self.log.append(records + [quarantine_record(q) for q in quarantined])
        except (LogWriteError, LogOverloaded) as e:
            for key in scored.reserved:
                self.dedupe.discard(key)
            reason = "log_overloaded" if isinstance(e, LogOverloaded) else "log_unavailable"
            self.metrics.unavailable.labels(reason).inc()
            answer = Answer.error(503, reason, "the event log cannot store events right now; nothing was accepted")
            answer.headers["Retry-After"] = "1"
            return answer

        log_wait_s = time.perf_counter() - log_t0

        # 6. answer: ids and scores of the last accepted event
        self.count(site.site_id, len(records), quarantined, scored.duplicates)
        answer = self.answer(site, scored.last, len(records), scored.rejected, scored.duplicates,
                             cookie_ok=bool(records) and scored.cookie_ok)
        answer.accepted = scored.accepted
        answer.log_wait_s = log_wait_s
        return answer

    def score_here(self, site: SiteConfig, req: IncomingRequest, parsed: list[Any],
                   info: normalize.RequestInfo) -> Scored:
        """Step 4 in this process: each event validated, deduplicated, scored, made a record."""
        out = Scored()
        records, accepted, reserved = out.records, out.accepted, out.reserved
        duplicates = 0
        cookie_ok = False
        reserve, scoring, site_id = self.dedupe.reserve, self.scoring, site.site_id
        parse_event, Rejection = normalize.parse_event, normalize.Rejection
        for index, obj in enumerate(parsed):
            event = parse_event(obj, info)
            if type(event) is Rejection:
                self.refuse(out, site, req, parsed, index, event)
                continue
            key = (site_id, event.event_id)
            if not reserve(key):  # a retry of an acknowledged event: answer, do not store again
                duplicates += 1
                continue
            reserved.append(key)
            scores, cookie_ok = scoring(event, site)
            records.append(row_record(event))  # packed into the AE row by the flusher
            accepted.append((event, scores))
        out.duplicates, out.cookie_ok = duplicates, cookie_ok
        if accepted:
            out.last = accepted[-1]
        return out

    # -- stages ------------------------------------------------------------------------------------------
    def tenant(self, host: str) -> SiteConfig | None:
        site_id = self.config.site_for_host(host)
        return self.config.config(site_id) if site_id else None

    def parse(self, req: IncomingRequest) -> list[Any] | normalize.Rejection:
        if req.query is not None:
            return normalize.parse_query(req.query)
        return normalize.parse_body(req.body, req.content_type, self.max_body, self.max_batch)

    def refuse(self, out: Scored, site: SiteConfig, req: IncomingRequest, parsed: list[Any], index: int,
               rejection: normalize.Rejection) -> None:
        """Event ``index`` of the request is refused: listed in the answer, kept in quarantine
        (the raw body when it held just this event, else the event as JSON)."""
        out.rejected.append({"index": index, "error": rejection.reason})
        raw = (req.body or _query_text(req)) if len(parsed) == 1 else _json_text(parsed[index])
        out.quarantined.append(self.quarantine_entry(site, req, rejection, raw=raw, index=index))

    def quarantine_entry(self, site: SiteConfig, req: IncomingRequest, rejection: normalize.Rejection,
                         *, raw: bytes | str, index: int | None = None) -> QuarantineEntry:
        return QuarantineEntry(
            site_id=site.site_id, received_ms=req.received_ms, reason=_reason_class(rejection),
            error=rejection.reason, status=rejection.status, raw=raw, batch_index=index,
            content_type=req.content_type, user_agent=req.headers.get("user-agent", ""),
        )

    async def reject_all(self, site: SiteConfig, req: IncomingRequest, quarantined: list[QuarantineEntry],
                         status: int, errors: list[normalize.Rejection],
                         rejected: list[dict[str, Any]] | None = None) -> Answer:
        """Nothing accepted: keep the payloads in quarantine, answer 4xx with the reasons."""
        try:
            await self.log.append([quarantine_record(q) for q in quarantined])
        except (LogWriteError, LogOverloaded):
            self.metrics.unavailable.labels("quarantine_lost").inc()
        for q in quarantined:
            self.metrics.rejected.labels(site.site_id, q.reason).inc()
        body: dict[str, Any] = {"error": errors[0].reason if len(errors) == 1 else "every event was rejected",
                                "reason": _reason_class(errors[0]), "accepted": 0}
        if rejected is not None:
            body["rejected"] = rejected
        return Answer(status, body)

    def count(self, site_id: str, accepted: int, quarantined: list[QuarantineEntry], duplicates: int) -> None:
        m = self.metrics
        m.child(m.accepted, site_id).inc(accepted)
        if duplicates:
            m.child(m.duplicates, site_id).inc(duplicates)
        for q in quarantined:
            m.child(m.rejected, site_id, q.reason).inc()

    def answer(self, site: SiteConfig, last_accepted: tuple[Any, dict[str, float]] | None, accepted: int,
               rejected: list[dict[str, Any]], duplicates: int, *, cookie_ok: bool) -> Answer:
        """The 200 answer: ids and scores of the last accepted event (``last_accepted``:
        a TrackedEvent or anything with its visitor_id, session_id and consent, and scores)."""
        last, scores = last_accepted if last_accepted is not None else (None, {})
        body = {
            "visitor_id": last.visitor_id if last else "",
            "session_id": last.session_id if last else "",
            "scores": scores,
            "accepted": accepted + duplicates,
            "rejected": rejected,
        }
        if duplicates:
            body["duplicates"] = duplicates
        cookie = None
        if last is not None and last.visitor_id and cookie_ok and may_set_cookie(site, last):
            cookie = (last.visitor_id, site.cookie_max_age)
        return Answer(200, body, visitor_cookie=cookie)


def may_set_cookie(site: SiteConfig, event: TrackedEvent) -> bool:
    """The first-party visitor cookie is set unless the site requires consent and the event
    has none."""
    return not (site.consent_required and event.consent is not True)


def _reason_class(rejection: normalize.Rejection) -> str:
    """A short, countable class for metrics and quarantine: ``too_large``, ``bad_body``,
    ``bad_type``, ``bad_ts``, ... (the offending field named by normalize)."""
    if rejection.status == 413:
        return "too_large"
    return f"bad_{rejection.field or 'event'}"


def _json_text(obj: Any) -> str:
    """A rejected batch member's payload as JSON text (a body is at most
    ``normalize.MAX_DEPTH`` levels deep, so json's recursion always reaches its end)."""
    import orjson

    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):  # a lone surrogate, an int beyond 64 bits
        return json.dumps(obj, ensure_ascii=False, default=repr)


def _query_text(req: IncomingRequest) -> str:
    if req.query_text:  # as received: a repeated key keeps every value
        return req.query_text
    from urllib.parse import urlencode

    return urlencode(list((req.query or {}).items()))


def now_ms() -> int:
    return time.time_ns() // 1_000_000
