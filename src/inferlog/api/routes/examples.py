"""Real held-out cases to try the API with, as JSON or as a CSV ready for `/predict/batch`."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from inferlog.api.errors import error_responses
from inferlog.features import FEATURE_NAMES
from inferlog.ml.dataset import held_out_cases

router = APIRouter(tags=["examples"], responses=error_responses(422))


@router.get(
    "/examples",
    summary="Real held-out cases (the model never saw them)",
    response_model=list[dict[str, float]],
    responses={200: {"content": {"text/csv": {}}}},
)
async def examples(
    n: Annotated[int, Query(ge=1, le=1000, description="how many cases")] = 5,
    label: Annotated[
        Literal["malignant", "benign"] | None, Query(description="only cases of this label")
    ] = None,
    format: Annotated[Literal["json", "csv"], Query(description="json or csv")] = "json",
) -> list[dict[str, float]] | Response:
    cases = held_out_cases(label)[:n]
    if format == "json":
        return cases
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FEATURE_NAMES, lineterminator="\n")
    writer.writeheader()
    writer.writerows(cases)
    return Response(buffer.getvalue(), media_type="text/csv")
