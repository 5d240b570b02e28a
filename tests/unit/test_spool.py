"""The spool's files: order, commits, segments, limits, failed writes and take-over."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from inferlog.telemetry import spool as spool_module
from inferlog.telemetry.spool import Segment, Spool, SpoolFullError


def lines(*numbers: int) -> bytes:
    return b"".join(b'{"n": %d}\n' % n for n in numbers)


def drain(segment: Segment, batch: int = 100) -> list[bytes]:
    found = []
    while segment.pending:
        got, end = segment.read(batch)
        segment.commit(end, len(got))
        found += got
    return found


def test_lines_come_back_in_order_from_the_committed_offset(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.append(lines(0, 1, 2))
    spool.append(lines(3, 4))
    (segment,) = spool.segments
    first, end = segment.read(3)
    assert first == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    segment.commit(end, 3)
    assert spool.pending == 2
    assert segment.read(10)[0] == [b'{"n": 3}', b'{"n": 4}']


def test_a_line_longer_than_one_read_still_comes_back_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "FIRST_READ_BYTES", 8)
    spool = Spool(tmp_path, max_bytes=10_000)
    long_line = b'{"n": "' + b"x" * 100 + b'"}'
    spool.append(long_line + b"\n" + lines(1))
    (segment,) = spool.segments
    assert drain(segment) == [long_line, b'{"n": 1}']


def test_segments_rotate_and_a_shipped_one_is_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 18)
    spool = Spool(tmp_path, max_bytes=10_000)
    for n in range(4):
        spool.append(lines(n))  # 9 bytes each: a new segment every 2 records
    old, current = spool.segments
    assert drain(old) == [b'{"n": 0}', b'{"n": 1}']
    assert spool.release(old)
    assert not old.path.exists()
    drain(current)
    assert not spool.release(current)  # still written to: kept
    assert [s.path for s in spool.segments] == [current.path]


def test_files_are_private_to_the_service_user(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10_000)
    spool.append(lines(0))
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    assert stat.S_IMODE(spool.segments[0].path.stat().st_mode) == 0o600


def test_the_size_limit_refuses_a_write_whole(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=25)
    spool.append(lines(0, 1))  # 20 bytes
    with pytest.raises(SpoolFullError):
        spool.append(lines(2))
    assert spool.pending == 2


def test_a_failed_write_leaves_nothing_of_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.append(lines(0))
    real_write = os.write

    def disk_full_midway(fd: int, data: bytes) -> int:
        real_write(fd, data[:4])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "write", disk_full_midway)
    with pytest.raises(OSError, match="No space"):
        spool.append(lines(1))
    monkeypatch.undo()
    spool.append(lines(2))
    assert drain(spool.segments[0]) == [b'{"n": 0}', b'{"n": 2}']


def test_a_live_processs_segment_is_not_taken_over(tmp_path: Path) -> None:
    owner = Spool(tmp_path, max_bytes=10_000)
    owner.append(lines(0, 1))
    other = Spool(tmp_path, max_bytes=10_000)
    assert other.take_over_orphans() == []


def test_a_segment_left_behind_is_taken_over_from_its_committed_offset(tmp_path: Path) -> None:
    gone = Spool(tmp_path, max_bytes=10_000)
    gone.append(lines(0, 1, 2, 3))
    (segment,) = gone.segments
    path = segment.path
    _, first_end = segment.read(1)
    segment.commit(first_end, 1)  # the offset file says: one shipped
    _, second_end = segment.read(1)  # shipped too, but the owner died before its offset file
    gone.close()
    with path.open("ab") as f:
        f.write(b'{"n": 4, "torn')  # a write cut short when the owner died
    successor = Spool(tmp_path, max_bytes=10_000)
    (taken,) = successor.take_over_orphans()
    assert taken.pending == 3  # after the offset file, torn tail cut off
    taken.skip_to(second_end)  # what Redis says was shipped (it is further)
    assert drain(taken) == [b'{"n": 2}', b'{"n": 3}']
    assert successor.release(taken)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # the offset file went with its segment
    assert Spool(tmp_path, max_bytes=10_000).take_over_orphans() == []


def test_the_size_limit_counts_only_what_is_not_shipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=20)
    for n in range(10):  # far more than 20 bytes in all, never more than 18 unshipped
        spool.append(lines(n, n))
        drain(spool.segments[-1])
    assert spool.own_bytes == 0


def test_a_fully_shipped_spool_leaves_no_file_on_close(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.append(lines(0))
    drain(spool.segments[0])
    spool.close()
    assert list(tmp_path.iterdir()) == []
