"""The worker's Prometheus metrics, registered on the shared ``ctx.registry``."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_FSYNC_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.accepted = Counter("clickstream_events_accepted", "Events acknowledged (in the durable log)",
                                ["site"], registry=registry)
        self.rejected = Counter("clickstream_events_rejected", "Events or payloads rejected, by reason",
                                ["site", "reason"], registry=registry)
        self.duplicates = Counter("clickstream_events_duplicate", "Retries of an already acknowledged event_id",
                                  ["site"], registry=registry)
        self.rate_limited = Counter("clickstream_rate_limited", "Requests answered 429", ["site"],
                                    registry=registry)
        self.unknown_host = Counter("clickstream_unknown_host_requests", "Requests for a Host no site owns",
                                    registry=registry)
        self.unavailable = Counter("clickstream_log_unavailable", "Requests answered 503 (log not writable or full)",
                                   ["reason"], registry=registry)
        self.request_latency = Histogram("clickstream_collect_latency_seconds", "Collect request latency",
                                         ["route"], buckets=_LATENCY_BUCKETS, registry=registry)
        self.log_pending_bytes = Gauge("clickstream_log_pending_bytes", "Bytes queued for the next group commit",
                                       registry=registry)
        self.log_unflushed_segments = Gauge("clickstream_log_unflushed_segments",
                                            "Closed log segments not yet turned into Parquet", registry=registry)
        self.log_fsyncs = Counter("clickstream_log_fsyncs", "Group commits (one fsync each)", registry=registry)
        self.log_group_seconds = Histogram("clickstream_log_group_commit_seconds",
                                           "One group commit: the write and its fsync", buckets=_FSYNC_BUCKETS,
                                           registry=registry)
        self.flush_seconds = Histogram("clickstream_flush_seconds", "Log -> Parquet flush duration",
                                       buckets=_JOB_BUCKETS, registry=registry)
        self.flushed_rows = Counter("clickstream_flushed_rows", "Rows published to Parquet", ["kind"],
                                    registry=registry)
        self.flush_compiled_rows = Counter("clickstream_flush_compiled_rows",
                                           "Event records the flush read with its compiled reader (the rest: orjson)",
                                           registry=registry)
        self.flush_failures = Counter("clickstream_flush_failures", "Flushes that failed (retried)",
                                      registry=registry)
        self.compaction_seconds = Histogram("clickstream_compaction_seconds", "Partition compaction duration",
                                            buckets=_JOB_BUCKETS, registry=registry)
        self.compacted_files = Counter("clickstream_compacted_files", "Small files merged away by compaction",
                                       registry=registry)
        self.shards_ready = Gauge("clickstream_scoring_shards_ready",
                                  "Scoring shards serving (clickstream serve --shards N; 0 without)", registry=registry)
        self.shard_restarts = Counter("clickstream_scoring_shard_restarts",
                                      "Scoring shards started again after dying or not answering", registry=registry)

        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: the hot path pays one dict lookup, not the
        client's label validation and lock per request."""
        key = (id(metric), labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)
        return c
