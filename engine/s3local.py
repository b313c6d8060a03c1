"""S3 on local storage: the folder Distributed Map's ItemReader reads and ResultWriter writes.

``s3://BUCKET/KEY`` is the file ``ROOT/BUCKET/KEY``, where ROOT is the folder
named by ``STEPWISE_S3_ROOT`` (``--s3-root`` on ``run``, ``worker`` and
``serve`` sets it). This module owns that mapping and its safety: a bucket
or key can never name a file outside the root — ``..`` segments, absolute
keys, empty segments, NUL bytes and symbolic links that lead out are all
refused. It opens objects for streaming reads, lists a prefix the way
``listObjectsV2`` does (sorted by UTF-8 key bytes, items shaped ``Key``,
``Etag``, ``LastModified``, ``Size``, ``StorageClass``) and writes objects
atomically (a temporary file, then ``os.replace``). Every failure is a
`StatesError` carrying the caller's ASL error name (``States.ItemReaderFailed``
for reads, ``States.ResultWriterFailed`` for writes), as AWS names them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from statemachine.errors import States, StatesError

__all__ = ["S3_ROOT_ENV", "LocalS3", "ObjectWriter", "s3_root"]

S3_ROOT_ENV = "STEPWISE_S3_ROOT"
_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def s3_root() -> Path | None:
    """The local S3 root folder from ``STEPWISE_S3_ROOT``, or None when unset."""
    value = os.environ.get(S3_ROOT_ENV)
    return Path(value) if value else None


class LocalS3:
    """Buckets as folders under one root; every path is checked to stay inside it."""

    def __init__(self, root: Path | None, *, error: States) -> None:
        self._error = error
        if root is None:
            raise StatesError(
                error,
                f"No local S3 storage is configured: set {S3_ROOT_ENV} (or --s3-root) to the "
                "folder that holds the buckets",
            )
        self.root = root.resolve()

    def _fail(self, message: str) -> StatesError:
        return StatesError(self._error, message)

    def _bucket(self, bucket: Any) -> Path:
        if (
            not isinstance(bucket, str)
            or not bucket
            or bucket in (".", "..")
            or not set(bucket) <= _BUCKET_CHARS
        ):
            raise self._fail(f"Invalid bucket name: {bucket!r}")
        return self.root / bucket

    def _inside(self, path: Path, shown: str) -> Path:
        """`path` with symlinks resolved, refused unless it stays under the root."""
        real = path.resolve()
        if real != self.root and self.root not in real.parents:
            raise self._fail(f"The S3 location {shown} resolves outside the storage root")
        return real

    def path(self, bucket: Any, key: Any) -> Path:
        """The file behind ``s3://bucket/key``; refuses any key that could leave the root."""
        folder = self._bucket(bucket)
        if not isinstance(key, str) or not key:
            raise self._fail(f"Invalid object key: {key!r}")
        parts = key.split("/")
        if key.startswith("/") or "\x00" in key or any(p in ("", ".", "..") for p in parts):
            raise self._fail(f"Invalid object key (it could leave the bucket): {key!r}")
        return self._inside(folder.joinpath(*parts), f"s3://{bucket}/{key}")

    def open(self, bucket: Any, key: Any) -> IO[bytes]:
        """``getObject``: the object opened for a streaming binary read."""
        path = self.path(bucket, key)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise self._fail(
                f"The specified key does not exist. (Bucket: {bucket}, Key: {key})"
            ) from None
        except OSError as exc:
            raise self._fail(f"Cannot read s3://{bucket}/{key}: {exc.strerror}") from None

    def list_objects(self, bucket: Any, prefix: Any = "") -> Iterator[dict[str, Any]]:
        """``listObjectsV2``: every object whose key starts with `prefix`, in S3's order."""
        folder = self._bucket(bucket)
        if not isinstance(prefix, str) or "\x00" in prefix or ".." in prefix.split("/"):
            raise self._fail(f"Invalid prefix: {prefix!r}")
        if not folder.is_dir():
            raise self._fail(f"The specified bucket does not exist: {bucket}")
        real_folder = self._inside(folder, f"s3://{bucket}")
        keys: list[str] = []
        for directory, _subdirs, files in os.walk(real_folder):
            for name in files:
                full = Path(directory) / name
                key = full.relative_to(real_folder).as_posix()
                if key.startswith(prefix) and not name.startswith(".stepwise-"):
                    keys.append(key)
        # Keys (not file contents) are held: a listing's memory is its key count.
        keys.sort(key=lambda k: k.encode())
        for key in keys:
            path = self._inside(real_folder / key, f"s3://{bucket}/{key}")
            stat = path.stat()
            yield {
                "Etag": f'"{_md5(path)}"',
                "Key": key,
                "LastModified": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(),
                "Size": stat.st_size,
                "StorageClass": "STANDARD",
            }

    def put(self, bucket: Any, key: Any, body: bytes) -> int:
        """``putObject``: write the object atomically; returns its size in bytes."""
        path = self.path(bucket, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._inside(path.parent, f"s3://{bucket}/{key}")
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".stepwise-")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(body)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise self._fail(f"Cannot write s3://{bucket}/{key}: {exc.strerror}") from None
        return len(body)


class ObjectWriter:
    """An object written piece by piece (``putObject`` of a stream): appear whole, or not at all.

    `write` appends; `commit` moves the finished object into place and
    returns its size; `discard` drops it. Errors are the storage's own.
    """

    def __init__(self, storage: LocalS3, bucket: Any, key: Any) -> None:
        self._storage = storage
        self._shown = f"s3://{bucket}/{key}"
        self.path = storage.path(bucket, key)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            storage._inside(self.path.parent, self._shown)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".stepwise-")
        except OSError as exc:
            raise storage._fail(f"Cannot write {self._shown}: {exc.strerror}") from None
        self._temporary = Path(temporary)
        self._out = os.fdopen(handle, "wb")
        self.size = 0

    def write(self, data: bytes) -> None:
        try:
            self._out.write(data)
        except OSError as exc:
            self.discard()
            raise self._storage._fail(f"Cannot write {self._shown}: {exc.strerror}") from None
        self.size += len(data)

    def commit(self) -> int:
        try:
            self._out.close()
            os.replace(self._temporary, self.path)
        except OSError as exc:
            self.discard()
            raise self._storage._fail(f"Cannot write {self._shown}: {exc.strerror}") from None
        return self.size

    def discard(self) -> None:
        self._out.close()
        self._temporary.unlink(missing_ok=True)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
