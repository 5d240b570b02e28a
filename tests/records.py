"""Request records built the way the API builds them, for tests of what the pipeline makes."""

from __future__ import annotations

import datetime as dt

from inferlog.ml import dataset
from inferlog.ml.predictor import Predictor
from inferlog.telemetry.drafts import Draft, InferenceDraft, RecordShape, record_json
from inferlog.telemetry.profiler import InferenceProfiler
from inferlog.telemetry.record import RequestRecord

SHAPE = RecordShape("api", "0.1.0", "host", top_functions=10, max_cases=20)


def record(
    predictor: Predictor,
    path: str = "/predict",
    status: int = 200,
    cases: int = 1,
    profiled: bool = True,
    method: str = "POST",
) -> RequestRecord:
    """One request's record, with a real (or skipped) profile of the model call."""
    x = dataset.split().x_test[:cases]
    predictions, capture = InferenceProfiler(enabled=profiled).run(predictor.predict, x)
    draft = Draft(
        timestamp=dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC),
        transaction_id=f"t-{method}-{path}-{status}-{cases}-{profiled}",
        method=method,
        path=path,
        status=status,
        duration_ns=2_000_000,
        inference=InferenceDraft("m", "v1", x, cases > 1, capture, predictions)
        if status < 400
        else None,
    )
    return RequestRecord.model_validate_json(record_json(draft, SHAPE))
