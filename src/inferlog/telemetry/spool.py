"""The spool: every record is written to a file of its API process before its response goes out.

    DATA_DIR/spool/records-<host>-<pid>-<token>.ndjson    one JSON record per line

- Each API process appends to segments of its own, locked with `flock` while the process lives.
  The write is one `write(2)` into the page cache (no fsync on the request path): a killed API
  loses no record it has answered. The shipper fsyncs while Redis is unreachable, when records
  may wait long enough for a machine crash to matter.
- A segment is read back from its committed offset: the shipper sends lines to Redis and then
  commits the offset, kept in `<segment>.offset`. A segment is replaced by a new one after
  `SEGMENT_BYTES`, and deleted once everything in it is committed. `SPOOL_MAX_BYTES` bounds
  what is not committed yet.
- A segment whose lock is free belongs to a process that died or stopped with records still
  waiting: the next process to look (at start, then every few seconds) takes its lock and ships
  what is left. Its committed offset is the larger of its offset file and the copy in Redis,
  written in the same transaction as its records: a crash between the transaction and the
  offset file does not send records twice.
- A new segment is created under a temporary name and renamed once locked, so no other process
  can take it over in between; a segment taken over is checked to be still linked after locking.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import uuid
from collections import deque
from pathlib import Path

from inferlog.private_files import private_dir

log = logging.getLogger(__name__)

SEGMENT_BYTES = 8 * 1024 * 1024
FIRST_READ_BYTES = 1024 * 1024
PREFIX = "records-"
SUFFIX = ".ndjson"


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _modified(path: Path) -> float:
    """Oldest first; a file deleted meanwhile by another process sorts anywhere."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


class SpoolFullError(Exception):
    """The spool's size limit (`SPOOL_MAX_BYTES`) is reached."""


class Segment:
    """One spool file, open and locked by this process."""

    def __init__(self, path: Path, fd: int, own: bool) -> None:
        self.path = path
        self.own = own
        self._fd = fd
        self.size = os.fstat(fd).st_size
        self.offset = 0  # committed: everything before it is in Redis
        self.pending = 0  # lines after the committed offset
        self._offset_path = path.with_name(path.name + ".offset")
        self._offset_fd: int | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, directory: Path) -> Segment:
        name = f"{PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}{SUFFIX}"
        temporary = directory / f".{name}.new"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        temporary.rename(directory / name)
        _fsync_directory(directory)  # the new name survives a crash
        return cls(directory / name, fd, own=True)

    @classmethod
    def take_over(cls, path: Path) -> Segment | None:
        """Lock a segment left by another process; None if a live process holds it."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != path.stat().st_ino:  # deleted by its last holder
                raise FileNotFoundError(path)
        except OSError:
            os.close(fd)
            return None
        segment = cls(path, fd, own=False)
        segment._cut_torn_tail()
        try:
            segment.offset = min(int(segment._offset_path.read_bytes() or 0), segment.size)
        except (FileNotFoundError, ValueError):
            segment.offset = 0
        segment.pending = segment._count_lines(segment.offset)
        return segment

    def _cut_torn_tail(self) -> None:
        """A write cut short (disk full, power loss) can leave a partial last line: cut it off."""
        start = max(0, self.size - FIRST_READ_BYTES)
        tail = os.pread(self._fd, self.size - start, start)
        if not tail or tail.endswith(b"\n"):
            return
        keep = start + tail.rfind(b"\n") + 1
        log.warning(
            "spool %s: cutting off a torn last record (%d bytes)", self.path, self.size - keep
        )
        os.ftruncate(self._fd, keep)
        self.size = keep

    def _count_lines(self, start: int = 0, end: int | None = None) -> int:
        end = self.size if end is None else end
        count = 0
        while start < end:
            chunk = os.pread(self._fd, min(FIRST_READ_BYTES, end - start), start)
            if not chunk:
                break
            count += chunk.count(b"\n")
            start += len(chunk)
        return count

    def append(self, data: bytes) -> None:
        """Append whole lines; on an error nothing of them stays in the file."""
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
            raise
        self.size += len(data)
        self.pending += data.count(b"\n")

    def skip_to(self, offset: int) -> None:
        """Move the committed offset forward to `offset`, known to be in Redis already."""
        offset = min(offset, self.size)
        if offset > self.offset:
            self.commit(offset, self._count_lines(self.offset, offset))

    def read(self, max_lines: int) -> tuple[list[bytes], int]:
        """Up to `max_lines` lines after the committed offset, and the offset after them."""
        available = self.size - self.offset
        size = min(FIRST_READ_BYTES, available)
        while True:
            chunk = os.pread(self._fd, size, self.offset)
            # At most max_lines complete lines, then the rest (a partial line, or more lines).
            lines = chunk.split(b"\n", max_lines)[:-1]
            if lines or size >= available:
                break
            size = min(size * 2, available)  # a line longer than the read: read more
        return lines, self.offset + sum(len(line) + 1 for line in lines)

    def commit(self, offset: int, count: int) -> None:
        self.offset = offset
        self.pending -= count
        if self._offset_fd is None:
            self._offset_fd = os.open(self._offset_path, os.O_RDWR | os.O_CREAT, 0o600)
        os.pwrite(self._offset_fd, b"%020d" % offset, 0)  # fixed width: one small write

    def fsync(self) -> None:
        os.fsync(self._fd)

    def close(self, delete: bool) -> None:
        if delete:
            self.path.unlink(missing_ok=True)
            self._offset_path.unlink(missing_ok=True)
        os.close(self._fd)
        if self._offset_fd is not None:
            os.close(self._offset_fd)


class Spool:
    """This process's segments, plus segments taken over from processes that are gone."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        private_dir(directory)
        self.segments: deque[Segment] = deque()  # oldest first: taken-over ones lead
        self._current: Segment | None = None

    @property
    def pending(self) -> int:
        return sum(s.pending for s in self.segments)

    @property
    def own_bytes(self) -> int:
        """Bytes this process wrote that are not in Redis yet."""
        return sum(s.size - s.offset for s in self.segments if s.own)

    def append(self, data: bytes) -> None:
        """Write `data` (whole lines) to this process's current segment."""
        if self.own_bytes + len(data) > self.max_bytes:
            raise SpoolFullError(f"the spool holds {self.own_bytes} bytes (SPOOL_MAX_BYTES)")
        current = self._current
        if current is None or current.size >= SEGMENT_BYTES:
            current = self._current = Segment.create(self.directory)
            self.segments.append(current)
        current.append(data)

    def take_over_orphans(self) -> list[Segment]:
        """Lock the segments no live process holds; they go first in the shipping order."""
        held = {s.path for s in self.segments}
        paths = sorted(
            (p for p in self.directory.glob(f"{PREFIX}*{SUFFIX}") if p not in held),
            key=_modified,
        )
        taken = [s for s in map(Segment.take_over, paths) if s is not None]
        for segment in reversed(taken):
            self.segments.appendleft(segment)
        return taken

    def release(self, segment: Segment) -> bool:
        """Delete a segment that is fully shipped and no longer written; True if deleted."""
        if segment.pending or segment is self._current:
            return False
        self.segments.remove(segment)
        segment.close(delete=True)
        return True

    def fsync(self) -> None:
        for segment in self.segments:
            if segment.own and segment.pending:
                segment.fsync()

    def close(self) -> None:
        """Fully shipped segments are deleted; the others stay for the next process."""
        while self.segments:
            segment = self.segments.popleft()
            segment.close(delete=segment.pending == 0)
        self._current = None
