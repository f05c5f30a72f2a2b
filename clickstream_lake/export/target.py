"""The export target: an fsspec URL (``file://``, ``s3://``, ``memory://``) with create-only writes.

Create-only is what makes a retried or repeated export safe, so each backend gets a write
that cannot silently replace an existing object:

* local disk: the bytes go to a temporary file (name not ending in ``.parquet``), fsynced,
  then ``os.link(tmp, final)`` - a hard link fails with ``EEXIST`` if the final name exists,
  atomically, unlike check-then-rename;
* S3 / R2 / MinIO: ``PutObject`` with ``If-None-Match: *`` - the store refuses (412
  PreconditionFailed) when the key exists, so two exporters racing on a key cannot both win;
* memory: check-and-put under a process lock (the memory filesystem lives in one process).

Object metadata: on S3 as user metadata (``x-amz-meta-site-id`` …); everywhere in the
Parquet footer key-value metadata, which is what file and memory targets rely on.
"""

from __future__ import annotations

import io
import os
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec
import pyarrow.parquet as pq

from clickstream_lake.export.errors import ExportError, TargetMissing, error_code, is_precondition_failed
from clickstream_lake.lake import fsync_dir

_MEMORY_LOCK = threading.Lock()


def redact_url(url: str) -> str:
    """The URL without any user:password part (it is stored in the control DB and logged)."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        parts = parts._replace(netloc=host)
    return urlunsplit(parts)


@dataclass
class ExportTarget:
    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        url = self.url
        if "://" not in url:
            url = "file://" + os.path.abspath(url)
        self.url = url.rstrip("/")
        self.protocol = self.url.split("://", 1)[0].lower()
        if self.protocol not in ("file", "local", "s3", "s3a", "memory"):
            raise ExportError(f"unsupported export URL {self.url!r}: use file://, s3:// or memory://")
        options = dict(self.storage_options)
        inner_retries = options.pop("retries", None)  # s3fs's own per-call retries (default 5)
        if self.protocol in ("s3", "s3a"):
            options.setdefault("use_listings_cache", False)
            options.setdefault("skip_instance_cache", True)
        fs, root = fsspec.core.url_to_fs(self.url, **options)
        if inner_retries is not None and hasattr(fs, "retries"):
            fs.retries = int(inner_retries)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = root.rstrip("/") if self.protocol != "memory" else "/" + root.strip("/")

    # -- naming -------------------------------------------------------------------------
    @property
    def is_s3(self) -> bool:
        return self.protocol in ("s3", "s3a")

    @property
    def is_local(self) -> bool:
        return self.protocol in ("file", "local")

    @property
    def display(self) -> str:
        endpoint = (self.storage_options.get("client_kwargs") or {}).get("endpoint_url")
        base = redact_url(self.url)
        return f"{base} (endpoint {redact_url(endpoint)})" if endpoint else base

    @property
    def identity(self) -> str:
        """What the watermark is keyed on: the URL (redacted) plus the S3 endpoint, if any."""
        endpoint = (self.storage_options.get("client_kwargs") or {}).get("endpoint_url")
        base = redact_url(self.url)
        return f"{base}@{redact_url(endpoint)}" if endpoint else base

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *[p.strip("/") for p in parts if p]])

    def url_of(self, path: str) -> str:
        return f"{self.protocol}://{path}" if self.protocol != "file" else f"file://{path}"

    @property
    def bucket(self) -> str:
        return self.root.split("/", 1)[0]

    def _s3_key(self, path: str) -> tuple[str, str]:
        bucket, _, key = path.partition("/")
        return bucket, key

    # -- checks -------------------------------------------------------------------------
    def check(self) -> None:
        """Fail early and clearly: the bucket must exist and be reachable with these credentials."""
        if self.is_s3:
            try:
                self.fs.call_s3("head_bucket", Bucket=self.bucket)
            except Exception as exc:
                code = error_code(exc)
                if code in ("404", "NoSuchBucket") or (code is None and isinstance(exc, FileNotFoundError)):
                    raise TargetMissing(
                        f"bucket {self.bucket!r} does not exist at {self.display}: create it or fix CLICKSTREAM_EXPORT_URL"
                    ) from exc
                raise
        elif self.is_local:
            parent = self.root
            while parent and not os.path.exists(parent):
                parent = os.path.dirname(parent)
            if not parent or not os.access(parent, os.W_OK):
                raise TargetMissing(f"export directory {self.root} cannot be created (no writable parent)")

    # -- writes ---------------------------------------------------------------------------
    def put_if_absent(self, path: str, data: bytes, metadata: dict[str, str]) -> bool:
        """Create ``path`` with ``data``; False (and nothing written) if it already exists."""
        if self.is_s3:
            bucket, key = self._s3_key(path)
            try:
                self.fs.call_s3(
                    "put_object",
                    Bucket=bucket,
                    Key=key,
                    Body=data,
                    Metadata=metadata,
                    IfNoneMatch="*",
                    ContentType="application/vnd.apache.parquet",
                )
            except Exception as exc:
                if is_precondition_failed(exc):
                    return False
                raise
            return True
        if self.is_local:
            parent, tmp = _write_synced_tmp(path, data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            fsync_dir(parent)
            return True
        with _MEMORY_LOCK:
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, data)
            return True

    def put_replace(self, path: str, data: bytes, content_type: str = "application/json") -> None:
        """Whole-object overwrite, for derived documents (the day manifest)."""
        if self.is_s3:
            bucket, key = self._s3_key(path)
            self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        elif self.is_local:
            parent, tmp = _write_synced_tmp(path, data)
            os.replace(tmp, path)
        else:
            with _MEMORY_LOCK:
                self.fs.pipe_file(path, data)

    # -- reads ----------------------------------------------------------------------------
    def read_bytes(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def exists(self, path: str) -> bool:
        if self.is_s3:
            bucket, key = self._s3_key(path)
            try:
                self.fs.call_s3("head_object", Bucket=bucket, Key=key)
            except FileNotFoundError:
                return False
            return True
        return self.fs.exists(path)

    def object_metadata(self, path: str) -> dict[str, str]:
        """User metadata of an object (S3), else the Parquet footer key-value metadata."""
        if self.is_s3:
            bucket, key = self._s3_key(path)
            head = self.fs.call_s3("head_object", Bucket=bucket, Key=key)
            return {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
        return footer_metadata(self.read_bytes(path))

    def size(self, path: str) -> int:
        return int(self.fs.info(path)["size"])


def footer_metadata(data: bytes) -> dict[str, str]:
    md = pq.ParquetFile(io.BytesIO(data)).schema_arrow.metadata or {}
    return {k.decode(): v.decode() for k, v in md.items() if not k.startswith(b"ARROW:")}


def _write_synced_tmp(path: str, data: bytes) -> tuple[str, str]:
    """Write ``data`` beside ``path`` under a dot-name that is not ``*.parquet`` and fsync it;
    returns (parent directory, temporary path) for the caller's link or rename."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return parent, tmp
