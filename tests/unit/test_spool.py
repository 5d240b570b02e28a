from __future__ import annotations

from pathlib import Path

from inferlog.telemetry.spool import Spool


def test_lines_come_back_in_order_and_a_full_drain_truncates(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.ndjson", max_bytes=10_000)
    assert spool.append([f'{{"n": {i}}}' for i in range(5)]) == 5
    first, offset = spool.read(3)
    assert first == ['{"n": 0}', '{"n": 1}', '{"n": 2}']
    spool.commit(offset, 3)
    assert spool.pending == 2
    rest, offset = spool.read(10)
    assert rest == ['{"n": 3}', '{"n": 4}']
    spool.commit(offset, 2)
    assert spool.pending == 0 and spool.size == 0


def test_a_reopened_spool_resumes_after_the_committed_offset(tmp_path: Path) -> None:
    path = tmp_path / "s.ndjson"
    spool = Spool(path, max_bytes=10_000)
    spool.append(["a", "b", "c"])
    _, offset = spool.read(1)
    spool.commit(offset, 1)
    reopened = Spool(path, max_bytes=10_000)
    assert reopened.pending == 2
    assert reopened.read(10)[0] == ["b", "c"]


def test_the_size_limit_keeps_the_first_lines_that_fit(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.ndjson", max_bytes=10)
    assert spool.append(["aaaa", "bbbb", "cccc"]) == 2  # 5 + 5 bytes fit, the third does not
    assert spool.read(10)[0] == ["aaaa", "bbbb"]
    assert spool.append(["d"]) == 0


def test_a_torn_last_line_is_cut_off_on_open(tmp_path: Path) -> None:
    path = tmp_path / "s.ndjson"
    path.write_bytes(b'{"ok": 1}\n{"torn":')
    spool = Spool(path, max_bytes=10_000)
    assert spool.pending == 1
    spool.append(['{"ok": 2}'])
    assert spool.read(10)[0] == ['{"ok": 1}', '{"ok": 2}']
