"""CSV batches: parse and validate every row, and write the results as CSV.

The header row names the feature-spec columns, in any order, each exactly once. Every problem in
the file is collected (unknown, missing or duplicate columns; short rows; cells that are not
numbers or break the spec's rules) so the client can fix them all at once. Row numbers are line
numbers as a spreadsheet shows them: the header is row 1.
"""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from inferlog.api.errors import LISTED_ERRORS, InputError
from inferlog.api.schemas import Case, FieldError
from inferlog.features import FEATURE_NAMES
from inferlog.ml.predictor import Prediction

MAX_COLUMNS = 100  # the 30 features, with room for a few extra columns to be named as unknown
RESULT_COLUMNS = (
    "label",
    "probability_malignant",
    "threshold",
    "risk_level",
    "out_of_range_features",
    "top_features",
)


@dataclass(frozen=True)
class ParsedCsv:
    header: list[str]
    rows: list[list[str]]
    matrix: np.ndarray


def parse_cases(body: bytes, max_rows: int) -> ParsedCsv:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            [FieldError(field="body", reason=f"not UTF-8 text: {exc.reason}")]
        ) from exc
    try:
        reader = (row for row in csv.reader(io.StringIO(text, newline="")) if any(row))
        first = next(reader, None)
        if first is None:
            raise InputError([FieldError(field="body", reason="empty CSV: expected a header row")])
        # Checked before any row is read: a header of millions of columns costs its own
        # parsing only, and is answered in one line.
        if len(first) > MAX_COLUMNS:
            raise InputError(
                [
                    FieldError(
                        field="body",
                        row=1,
                        reason=f"the header has {len(first)} columns; at most {MAX_COLUMNS} "
                        f"(the {len(FEATURE_NAMES)} features, each once)",
                    )
                ]
            )
        # One row past the limit is enough to refuse: the rest of the body is never parsed.
        lines = [first, *itertools.islice(reader, max_rows + 1)]
    except csv.Error as exc:
        raise InputError([FieldError(field="body", reason=f"malformed CSV: {exc}")]) from exc

    header = [name.strip() for name in lines[0]]
    errors = _header_errors(header)
    if errors:
        raise InputError(errors)
    rows = lines[1:]
    if not rows:
        raise InputError([FieldError(field="body", reason="no cases after the header row")])
    if len(rows) > max_rows:
        raise InputError(
            [
                FieldError(
                    field="body", reason=f"more than {max_rows} cases; at most {max_rows} per batch"
                )
            ]
        )

    matrix = np.empty((len(rows), len(FEATURE_NAMES)), dtype=np.float64)
    total = 0
    for offset, cells in enumerate(rows):
        line = offset + 2
        # Only the first LISTED_ERRORS problems are described (built); the rest are counted.
        count, row_errors, values = _parse_row(header, cells, line, LISTED_ERRORS - len(errors))
        total += count
        errors.extend(row_errors)
        if not count:
            matrix[offset] = [values[name] for name in FEATURE_NAMES]
    if total:
        raise InputError(errors, total)
    return ParsedCsv(header=header, rows=rows, matrix=matrix)


def _header_errors(header: list[str]) -> list[FieldError]:
    known = set(FEATURE_NAMES)
    errors = [
        FieldError(field=name or "(blank)", row=1, reason="unknown column")
        for name in header
        if name not in known
    ]
    seen: set[str] = set()
    for name in header:
        if name in seen and name in known:
            errors.append(FieldError(field=name, row=1, reason="duplicate column"))
        seen.add(name)
    errors.extend(
        FieldError(field=name, row=1, reason="missing column")
        for name in FEATURE_NAMES
        if name not in seen
    )
    return errors


def _parse_row(
    header: list[str], cells: list[str], line: int, room: int
) -> tuple[int, list[FieldError], dict[str, float]]:
    """The row's number of problems, the first `room` of them described, and its values."""
    if len(cells) != len(header):
        reason = f"{len(cells)} cells; the header has {len(header)} columns"
        return 1, [FieldError(field="row", row=line, reason=reason)][:room], {}
    bad: list[tuple[str, str]] = []
    values: dict[str, float] = {}
    for name, cell in zip(header, cells, strict=True):
        try:
            values[name] = float(cell)
        except ValueError:
            bad.append((name, cell))
    if bad:
        described = [
            FieldError(field=name, row=line, reason=f"not a number: {cell!r}")
            for name, cell in bad[:room]
        ]
        return len(bad), described, {}
    try:
        Case.model_validate(values)
    except ValidationError as exc:
        problems = exc.errors(include_url=False)
        described = [
            FieldError(field=str(e["loc"][0]), row=line, reason=e["msg"]) for e in problems[:room]
        ]
        return len(problems), described, {}
    return 0, [], values


def write_results(parsed: ParsedCsv, predictions: list[Prediction]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*parsed.header, *RESULT_COLUMNS])
    for cells, p in zip(parsed.rows, predictions, strict=True):
        writer.writerow(
            [
                *cells,
                p.label,
                repr(p.probability_malignant),
                repr(p.threshold),
                p.risk_level,
                ";".join(p.out_of_range_features),
                ";".join(f"{c.name}:{c.contribution:+.4f}" for c in p.top_features),
            ]
        )
    return buffer.getvalue()
