"""Where telemetry's time goes, per request, in process (no HTTP): each part of "telemetry on".

Times a single-row inference plain and under the profiler, then each step that turns it into a
record in the spool, as the median of repeated runs, interleaved so that machine noise hits all
parts alike. Alternatives that the code does not take are timed next to the ones it takes, so
each choice shows its gain: the caller -> callee entries cProfile can keep, a summary that
walks every call tree instead of reusing verified ones, a record validated before serialising.
The shipper's share (decoding a record again to count it in the live statistics) is the last.

    uv run python bench/telemetry_costs.py [--repeats 2000] [--model-dir model]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pydantic_core
import sklearn

from inferlog.api.app import known_routes
from inferlog.ml import dataset
from inferlog.ml.artifacts import load_artifacts
from inferlog.ml.predictor import Predictor
from inferlog.telemetry import profiler
from inferlog.telemetry.drafts import Draft, InferenceDraft, RecordShape, build_record
from inferlog.telemetry.profiler import InferenceProfiler, summarize
from inferlog.telemetry.record import RequestRecord
from inferlog.telemetry.spool import Spool
from inferlog.telemetry.stats import route_matcher, tally

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "model")
    args = parser.parse_args()

    sklearn.set_config(assume_finite=True, skip_parameter_validation=True)  # as the API does
    predictor = Predictor(load_artifacts(args.model_dir))
    x = dataset.split().x_test[:1]
    on, off = InferenceProfiler(), InferenceProfiler(enabled=False)
    on.run(predictor.predict, x)  # warm-up: first calls fill caches
    predictions, capture = on.run(predictor.predict, x)
    draft = Draft(
        timestamp=dt.datetime.now(dt.UTC),
        transaction_id="bench",
        method="POST",
        path="/predict",
        status=200,
        duration_ns=1_000_000,
        inference=InferenceDraft("model", "v", x, False, capture, predictions),
    )
    shape = RecordShape("api", "1", "host", top_functions=10, max_cases=20)
    document = build_record(draft, shape)
    line = pydantic_core.to_json(document) + b"\n"
    spool = Spool(Path(tempfile.mkdtemp()), max_bytes=2**40)
    text = line.decode().strip()
    route_of = route_matcher(known_routes())
    oldest = draft.timestamp - dt.timedelta(hours=1)

    def raw_profile(subcalls: bool) -> None:
        profile = cProfile.Profile(builtins=False, subcalls=subcalls)
        gc.disable()
        profile.enable()
        predictor.predict(x)
        profile.disable()
        gc.enable()
        profile.getstats()

    def summarize_cold() -> None:
        profiler._VERIFIED_TREES.clear()
        summarize(capture, 10)

    parts: dict[str, Callable[[], object]] = {
        "inference, plain": lambda: predictor.predict(x),
        "inference, clocks and memory only (profiling off)": lambda: off.run(predictor.predict, x),
        "inference, profiled": lambda: on.run(predictor.predict, x),
        "profile.getstats()": lambda: capture.profile.getstats() if capture.profile else None,
        "cProfile + getstats, as the API does on this Python": lambda: raw_profile(
            profiler.ONE_PROFILER_SEES_ALL_THREADS
        ),
        "  alternative: with caller -> callee entries (needed from 3.12)": lambda: raw_profile(
            True
        ),
        "profile statistics (summarize, reusing verified call trees)": lambda: summarize(
            capture, 10
        ),
        "  alternative: summarize walking every call tree": summarize_cold,
        "record as data (statistics included)": lambda: build_record(draft, shape),
        "record to JSON (pydantic-core, no validation)": lambda: pydantic_core.to_json(document),
        "  alternative: validate with RequestRecord, then JSON": lambda: (
            RequestRecord.model_validate(document).model_dump_json(by_alias=True)
        ),
        "spool write (one write(2))": lambda: spool.append(line),
        "live statistics: decode and count one record (in the shipper)": lambda: tally(
            [text], route_of, oldest
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.repeats):
        for name, part in parts.items():
            start = time.perf_counter()
            part()
            samples[name].append((time.perf_counter() - start) * 1e6)
    spool.close()

    medians = {name: statistics.median(values) for name, values in samples.items()}
    plain = medians["inference, plain"]
    print(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"command: uv run python bench/telemetry_costs.py --repeats {args.repeats}")
    calls = summarize(capture, 10)["function_calls"]
    print(f"profiled inference: {calls} Python function calls, {len(line)} bytes of record")
    print()
    print("| part | median µs | ratio to plain inference |")
    print("| --- | --- | --- |")
    for name, median in medians.items():
        print(f"| {name} | {median:.1f} | {median / plain:.2f} |")


if __name__ == "__main__":
    main()
