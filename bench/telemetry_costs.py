"""Where telemetry's time goes, per request, in process (no HTTP): the parts of "telemetry on".

Times a single-row inference plain and under the profiler, the off-path work of the shipper
(profile statistics, record building and JSON) and its parts, each as the median of repeated
runs, interleaved so that machine noise hits all parts alike.

    uv run python bench/telemetry_costs.py [--repeats 2000] [--model-dir model]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from inferlog.ml import dataset
from inferlog.ml.artifacts import load_artifacts
from inferlog.ml.predictor import Predictor
from inferlog.telemetry.drafts import Draft, InferenceDraft, build_record
from inferlog.telemetry.profiler import InferenceProfiler, summarize

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "model")
    args = parser.parse_args()

    predictor = Predictor(load_artifacts(args.model_dir))
    x = dataset.split().x_test[:1]
    profiler = InferenceProfiler()
    profiler.run(predictor.predict, x)  # warm-up: first calls fill caches
    predictions, capture = profiler.run(predictor.predict, x)

    profiled_draft = Draft(
        timestamp=dt.datetime.now(dt.UTC),
        transaction_id="bench",
        method="POST",
        path="/predict",
        status=200,
        duration_ns=1_000_000,
        inference=InferenceDraft("model", "v", x, False, capture, predictions),
    )
    parts: dict[str, Callable[[], object]] = {
        "inference, plain": lambda: predictor.predict(x),
        "inference, under the profiler": lambda: profiler.run(predictor.predict, x),
        "profile statistics (summarize)": lambda: summarize(capture, 10),
        "record + JSON, with statistics": lambda: build_record(
            profiled_draft, "api", "1", "host", 10
        ).to_json(),
        "record + JSON, without statistics": lambda: build_record(
            profiled_draft, "api", "1", "host", 10, with_profile_stats=False
        ).to_json(),
    }
    samples: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.repeats):
        for name, part in parts.items():
            start = time.perf_counter()
            part()
            samples[name].append((time.perf_counter() - start) * 1e6)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    plain = medians["inference, plain"]
    print(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"command: uv run python bench/telemetry_costs.py --repeats {args.repeats}")
    calls = summarize(capture, 10)["function_calls"]
    print(f"profiled inference: {calls} Python function calls")
    print()
    print("| part | median µs | ratio to plain inference |")
    print("| --- | --- | --- |")
    for name, median in medians.items():
        print(f"| {name} | {median:.1f} | {median / plain:.2f} |")


if __name__ == "__main__":
    main()
