"""Schemathesis hooks for the contract test (loaded through SCHEMATHESIS_HOOKS).

The OpenAPI document describes the CSV body of `/predict/batch` as the list of cases it carries
(the JSON body's schema): this serializer writes such a list the way a client would, a header
row of the feature names, then a row per case. Anything else generated for it (negative
tests) goes as its text.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import schemathesis


@schemathesis.serializer("text/csv")
def cases_as_csv(context: Any, value: Any) -> bytes:
    if not (isinstance(value, list) and value and all(isinstance(c, dict) for c in value)):
        return str(value).encode()
    columns = list(dict.fromkeys(name for case in value for name in case))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(value)
    return out.getvalue().encode()
