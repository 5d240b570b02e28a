"""An append-only spool file for records that could not reach Redis.

One JSON record per line. Reading starts at a committed byte offset (kept in a sidecar file,
replaced atomically), so a drain that is interrupted resumes where it stopped, also after a
restart. When everything is drained the file is truncated. Appends are flushed and fsynced: the
spool exists for outages, when durability matters more than speed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class Spool:
    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._offset_path = path.with_name(path.name + ".offset")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        self._repair_torn_tail()
        self.offset = self._read_offset()
        self.pending = self._count_lines_from(self.offset)
        if self.pending:
            log.info("spool %s holds %d records from an earlier run", path, self.pending)

    def _repair_torn_tail(self) -> None:
        """A crash mid-append can leave a partial last line: cut it off (and say so)."""
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            log.warning(
                "spool %s: discarding a torn last record (%d bytes)", self.path, len(data) - keep
            )
            with self.path.open("r+b") as f:
                f.truncate(keep)

    def _read_offset(self) -> int:
        try:
            offset = int(self._offset_path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        return min(offset, self.path.stat().st_size)

    def _count_lines_from(self, offset: int) -> int:
        with self.path.open("rb") as f:
            f.seek(offset)
            return sum(1 for _ in f)

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def append(self, lines: list[str]) -> int:
        """Append as many lines as the size limit allows, in order; returns how many fit."""
        size = self.size
        payload = bytearray()
        written = 0
        for line in lines:
            encoded = line.encode() + b"\n"
            if size + len(payload) + len(encoded) > self.max_bytes:
                break
            payload += encoded
            written += 1
        if payload:
            with self.path.open("ab") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            self.pending += written
        return written

    def read(self, max_lines: int) -> tuple[list[str], int]:
        """Up to `max_lines` lines after the committed offset, and the offset after them."""
        lines: list[str] = []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            while len(lines) < max_lines:
                raw = f.readline()
                if not raw:
                    break
                lines.append(raw.rstrip(b"\n").decode())
            return lines, f.tell()

    def commit(self, offset: int, count: int) -> None:
        """Mark lines up to `offset` as delivered; truncate once everything is."""
        self.pending -= count
        if offset >= self.size:
            with self.path.open("r+b") as f:
                f.truncate(0)
            self._offset_path.unlink(missing_ok=True)
            self.offset, self.pending = 0, 0
            return
        tmp = self._offset_path.with_name(self._offset_path.name + ".tmp")
        tmp.write_text(str(offset))
        tmp.replace(self._offset_path)
        self.offset = offset
