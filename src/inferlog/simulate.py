"""`python -m inferlog simulate`: realistic traffic for the dashboards and the benchmarks.

Cases are real held-out cases with small Gaussian noise (a share of each feature's training
standard deviation), sent to `POST /predict` at a steady rate for a duration. Options:
- `--drift FEATURE=SHIFT` (repeatable) shifts a feature by SHIFT training standard deviations,
  to show data drift;
- `--invalid-share` sends that share of requests with an impossible value (a 422 by design).
The summary (sent, answered by status, failed to connect) is printed as JSON at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
from tqdm import tqdm

from inferlog.features import FEATURES, FEATURES_BY_NAME
from inferlog.ml import dataset

NOISE_SHARE = 0.05


@dataclass
class Traffic:
    seed: int = 7
    drift: dict[str, float] = field(default_factory=dict)
    invalid_share: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.cases = dataset.held_out_cases()
        train = dataset.split().x_train
        self.std = {f.name: float(train[:, i].std()) for i, f in enumerate(FEATURES)}

    def case(self) -> dict[str, float]:
        base = self.rng.choice(self.cases)
        case = {}
        for spec in FEATURES:
            value = base[spec.name] + self.rng.gauss(0.0, NOISE_SHARE * self.std[spec.name])
            value += self.drift.get(spec.name, 0.0) * self.std[spec.name]
            case[spec.name] = min(max(value, spec.lower), spec.upper)
        if self.rng.random() < self.invalid_share:
            case[self.rng.choice(FEATURES).name] = -1.0  # impossible: sizes are never negative
        return case


def parse_drift(items: list[str]) -> dict[str, float]:
    drift = {}
    for item in items:
        name, _, shift = item.partition("=")
        if name not in FEATURES_BY_NAME:
            raise argparse.ArgumentTypeError(f"unknown feature {name!r} in --drift")
        drift[name] = float(shift or 1.0)
    return drift


def simulate(api_url: str, rate: float, duration: float, traffic: Traffic) -> dict[str, object]:
    total = max(1, int(rate * duration))
    statuses: Counter[str] = Counter()
    start = time.monotonic()
    with httpx.Client(base_url=api_url, timeout=10) as client:
        for n in tqdm(range(total), unit="request", desc="simulating", disable=None):
            # Steady pacing: request n leaves at start + n / rate.
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                statuses[str(client.post("/predict", json=traffic.case()).status_code)] += 1
            except httpx.TransportError:
                statuses["unreachable"] += 1
    return {
        "sent": total,
        "statuses": dict(statuses),
        "seconds": round(time.monotonic() - start, 1),
    }


def main(argv: list[str] | None = None, api_url: str = "http://127.0.0.1:8000") -> int:
    parser = argparse.ArgumentParser(prog="inferlog simulate", description=__doc__.split("\n")[0])
    parser.add_argument("--api-url", default=api_url)
    parser.add_argument("--rate", type=float, default=5.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--drift", action="append", default=[], metavar="FEATURE=SHIFT")
    parser.add_argument("--invalid-share", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    try:
        drift = parse_drift(args.drift)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    traffic = Traffic(seed=args.seed, drift=drift, invalid_share=args.invalid_share)
    summary = simulate(args.api_url, args.rate, args.duration, traffic)
    print(json.dumps(summary))
    return 0 if "unreachable" not in summary["statuses"] else 1
