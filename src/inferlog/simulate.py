"""`python -m inferlog simulate`: realistic traffic for the dashboards and the benchmarks.

Cases are real held-out cases with small Gaussian noise (a share of each feature's training
standard deviation), sent to `POST /predict` at a steady rate for a duration. The cases and
the spreads come from the API itself (`GET /examples`, `GET /model-info`): this is a pure HTTP
client, with no data set or model to load, so it starts at once. Options:
- `--drift FEATURE=SHIFT` (repeatable) shifts a feature by SHIFT training standard deviations,
  to show data drift;
- `--invalid-share` sends that share of requests with an impossible value (a 422 by design).
A progress bar shows the rate and the answers so far; the summary at the end says what was
sent, how it was answered and how fast (`--json`: the same as one JSON line, for scripts).
One log line per request (httpx's) only with `--verbose`.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from tqdm import tqdm

log = logging.getLogger("inferlog.simulate")

NOISE_SHARE = 0.05
ALL_EXAMPLES = 1000  # /examples' largest page: every held-out case


class UnknownFeatureError(ValueError):
    """A --drift names a feature the API does not have."""


@dataclass(frozen=True)
class FeatureRange:
    name: str
    lower: float  # the API's bounds: a case is kept inside them
    upper: float
    std: float  # the training standard deviation: the unit of noise and drift


@dataclass
class Traffic:
    """Cases drawn from real held-out cases, with noise, drift and invalid ones as asked."""

    cases: list[dict[str, float]]
    features: list[FeatureRange]
    seed: int = 7
    drift: dict[str, float] = field(default_factory=dict)
    invalid_share: float = 0.0

    def __post_init__(self) -> None:
        # Simulated traffic, reproducible from its seed: nothing secret is drawn.
        self.rng = random.Random(self.seed)  # noqa: S311
        unknown = sorted(set(self.drift) - {f.name for f in self.features})
        if unknown:
            raise UnknownFeatureError(f"unknown feature(s) in --drift: {', '.join(unknown)}")

    @classmethod
    def from_api(cls, client: httpx.Client, **options: Any) -> Traffic:
        """The API's own held-out cases and feature spec (`/examples`, `/model-info`): no
        data set or model needed here."""
        info = client.get("/model-info")
        info.raise_for_status()
        features = [
            FeatureRange(f["name"], f["lower"], f["upper"], f["training_std"])
            for f in info.json()["features"]
        ]
        examples = client.get("/examples", params={"n": ALL_EXAMPLES})
        examples.raise_for_status()
        return cls(examples.json(), features, **options)

    def case(self) -> dict[str, float]:
        base = self.rng.choice(self.cases)
        case = {}
        for f in self.features:
            value = base[f.name] + self.rng.gauss(0.0, NOISE_SHARE * f.std)
            value += self.drift.get(f.name, 0.0) * f.std
            case[f.name] = min(max(value, f.lower), f.upper)
        if self.rng.random() < self.invalid_share:
            case[self.rng.choice(self.features).name] = -1.0  # impossible: sizes are never negative
        return case


def parse_drift(items: list[str]) -> dict[str, float]:
    drift = {}
    for item in items:
        name, _, shift = item.partition("=")
        try:
            drift[name] = float(shift or 1.0)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--drift {item}: expected FEATURE=SHIFT, SHIFT a number of standard deviations"
            ) from None
    return drift


def simulate(api_url: str, rate: float, duration: float, traffic: Traffic) -> dict[str, Any]:
    total = max(1, int(rate * duration))
    statuses: Counter[str] = Counter()
    latencies_ms: list[float] = []
    start = time.monotonic()
    with (
        httpx.Client(base_url=api_url, timeout=10) as client,
        tqdm(total=total, unit="request", desc="simulating", disable=None) as bar,
    ):
        for n in range(total):
            # Steady pacing: request n leaves at start + n / rate.
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            try:
                statuses[str(client.post("/predict", json=traffic.case()).status_code)] += 1
                latencies_ms.append((time.perf_counter() - sent) * 1000)
            except httpx.TransportError:
                statuses["unreachable"] += 1
            bar.set_postfix_str(_counts(statuses), refresh=False)
            bar.update()
    seconds = time.monotonic() - start
    p50, p95 = _percentiles(latencies_ms)
    return {
        "url": f"{api_url.rstrip('/')}/predict",
        "sent": total,
        "statuses": dict(statuses),
        "seconds": round(seconds, 1),
        "rate": round(total / seconds, 1),
        "latency_ms": {"p50": p50, "p95": p95} if p50 is not None else None,
    }


def _percentiles(values: list[float]) -> tuple[float | None, float | None]:
    """p50 and p95, interpolated as numpy's default does."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (None, None)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94]


def _counts(statuses: Counter[str]) -> str:
    return ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))


MEANINGS = {
    "200": "predicted",
    "422": "refused as invalid (--invalid-share sends these on purpose)",
    "401": "refused: the API wants an API key",
    "429": "refused: over the API's rate limit",
    "unreachable": "no answer: is the API running? (make run)",
}


def summary_text(summary: dict[str, Any]) -> str:
    """The end of a run on one screen: what was sent, how it was answered, how fast."""
    lines = [
        f"Sent {summary['sent']} requests in {summary['seconds']} s "
        f"({summary['rate']} requests/s) to {summary['url']}"
    ]
    for status, n in sorted(summary["statuses"].items()):
        share = 100 * n / summary["sent"]
        meaning = MEANINGS.get(status, "")
        lines.append(f"  {status:>11}  {n:>6}  {share:5.1f} %  {meaning}".rstrip())
    if summary["latency_ms"]:
        latency = summary["latency_ms"]
        lines.append(
            f"Latency seen by the client: p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms"
        )
    lines.append("Watch it: the UI's Monitoring tab, or Kibana's dashboards with the full stack.")
    return "\n".join(lines)


def main(argv: list[str] | None = None, api_url: str = "http://127.0.0.1:8000") -> int:
    parser = argparse.ArgumentParser(prog="inferlog simulate", description=__doc__.split("\n")[0])
    parser.add_argument("--api-url", default=api_url)
    parser.add_argument("--rate", type=float, default=5.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--drift", action="append", default=[], metavar="FEATURE=SHIFT")
    parser.add_argument("--invalid-share", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="the summary as one JSON line")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        drift = parse_drift(args.drift)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if not args.verbose:  # httpx logs each request at INFO: hundreds of lines a run
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        with httpx.Client(base_url=args.api_url, timeout=10) as client:
            traffic = Traffic.from_api(
                client, seed=args.seed, drift=drift, invalid_share=args.invalid_share
            )
    except UnknownFeatureError as exc:
        parser.error(str(exc))
    except (httpx.HTTPError, ValueError, KeyError) as exc:  # down, or not this API
        log.error("the API at %s did not give its cases and features (%r)", args.api_url, exc)
        return 1
    summary = simulate(args.api_url, args.rate, args.duration, traffic)
    print(json.dumps(summary) if args.json else summary_text(summary))
    return 0 if "unreachable" not in summary["statuses"] else 1
