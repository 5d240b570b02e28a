"""Property-based: whatever JSON arrives, the API answers 2xx or 4xx, never 5xx."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferlog.features import FEATURE_NAMES

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
any_json = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
# Mostly-right cases reach the deeper validation rules (bounds, finiteness, unknown keys).
feature_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.text(max_size=5),
    st.none(),
)
near_cases = st.fixed_dictionaries(
    {},
    optional={name: feature_values for name in FEATURE_NAMES} | {"extra": any_json, "": any_json},
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def post_json(client: TestClient, path: str, value: object) -> int:
    raw = json.dumps(value, allow_nan=True)  # NaN/Infinity tokens are sent as-is on purpose
    return client.post(path, content=raw, headers={"content-type": "application/json"}).status_code


@FUZZ
@given(value=any_json | near_cases)
def test_predict_never_answers_5xx_to_any_json(client: TestClient, value: object) -> None:
    status = post_json(client, "/predict", value)
    assert 200 <= status < 500


@FUZZ
@given(value=any_json | st.lists(near_cases, max_size=4))
def test_batch_never_answers_5xx_to_any_json(client: TestClient, value: object) -> None:
    status = post_json(client, "/predict/batch", value)
    assert 200 <= status < 500


cell = st.floats(allow_nan=True, allow_infinity=True).map(repr) | st.text(max_size=6)
csv_with_header = st.lists(
    st.lists(cell, min_size=29, max_size=31).map(lambda cells: ",".join(cells)),
    max_size=4,
).map(lambda rows: "\n".join([",".join(FEATURE_NAMES), *rows]).encode())


@FUZZ
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode) | csv_with_header)
def test_batch_never_answers_5xx_to_any_csv_bytes(client: TestClient, body: bytes) -> None:
    response = client.post("/predict/batch", content=body, headers={"content-type": "text/csv"})
    assert 200 <= response.status_code < 500


@FUZZ
@given(body=st.binary(max_size=200))
def test_predict_never_answers_5xx_to_arbitrary_bytes(client: TestClient, body: bytes) -> None:
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert 200 <= response.status_code < 500
