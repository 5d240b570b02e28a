"""The NDJSON sink, the embedded default: Elasticsearch bulk format, one file per index.

`data/indices/<index>.ndjson` holds action/source line pairs exactly as `_bulk` takes them, so
`python -m logs_pipeline replay` can load them into Elasticsearch later. Appends are flushed and
fsynced before the pipeline acknowledges. A redelivered record appends its documents again with
the same `_id`s: replay keeps the last, so counts still never double.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from inferlog.private_files import open_private_append, private_dir
from logs_pipeline.sinks import Action, WriteResult, bulk_lines


def read_actions(path: Path) -> Iterator[Action]:
    """Bulk-format pairs back into actions (a torn last pair from a crash is skipped)."""
    with path.open(encoding="utf-8") as f:
        while True:
            header, source = f.readline(), f.readline()
            if not source.endswith("\n"):
                return
            meta = json.loads(header)["index"]
            yield {"_index": meta["_index"], "_id": meta["_id"], "_source": json.loads(source)}


class NdjsonSink:
    name = "ndjson"

    def __init__(self, directory: Path) -> None:
        self.directory = private_dir(directory)  # the documents hold the cases' inputs

    def path(self, index: str) -> Path:
        return self.directory / f"{index}.ndjson"

    def write(self, actions: list[Action]) -> WriteResult:
        result = WriteResult()
        by_index: dict[str, list[Action]] = {}
        for action in actions:
            by_index.setdefault(action["_index"], []).append(action)
        for index, group in by_index.items():
            try:
                self._append(self.path(index), b"".join(bulk_lines(action) for action in group))
            except OSError as exc:  # a full or read-only disk: retried later, nothing acked
                result.postpone(group, f"cannot write {self.path(index)}: {exc}")
                continue
            result.confirmed[index] += len(group)
        return result

    @staticmethod
    def _append(path: Path, data: bytes) -> None:
        """Append and fsync; on failure, cut what was half written (a torn pair in the middle
        of the file would stop `replay` and `status` there)."""
        with open_private_append(path) as f:
            size = f.tell()
            try:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                with contextlib.suppress(OSError):
                    f.truncate(size)
                raise

    def counts(self) -> dict[str, int]:
        """Distinct `_id`s per index, as Elasticsearch would count them after a replay."""
        return {
            path.stem: len({a["_id"] for a in read_actions(path)})
            for path in sorted(self.directory.glob("*.ndjson"))
        }
