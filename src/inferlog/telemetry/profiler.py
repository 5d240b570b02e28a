"""cProfile around the model call, plus CPU time and memory, and the statistics of a profile.

`InferenceProfiler.run` enables a profiler, calls the model and takes a few clock and memory
readings. `summarize` turns the raw profile into the record's statistics when the response is
complete; on 3.12+ it reuses the call trees it verified for earlier requests.

Concurrency. Python 3.12+ implements cProfile with `sys.monitoring`: one active profiler per
process, and it records the calls of every thread (as if they were made by whatever function
the profiled thread is running). These keep a profile to its own request:
- the API runs its Python code on one thread, the event loop: the model call is synchronous
  and the shipper is an asyncio task, so almost nothing else runs while a profile is active
  (asyncio's resolver threads can, while the Redis client reconnects to a named host: the
  call-tree filter below keeps their calls out);
- a process-wide non-blocking lock lets one inference be profiled at a time; an inference that
  finds it taken runs unprofiled and says so (`profiled: false`, reason "profiler busy"),
  never waits and never fails; `enable()` refusing (another tool active) is handled the same way;
- the garbage collector is paused for the (sub-millisecond) profiled call: a collection there
  would run unrelated finalizers (`__del__` of a closed connection, say) on this thread,
  inside the model's call tree;
- on 3.12+, `summarize` keeps only the call tree under the model call, and counts a function
  that was also called from outside that tree only for its calls from inside it. (pstats
  aggregates per function, so the callees of such a shared function cannot be split: hence the
  first point.) Before 3.12 a profiler sees only its own thread and this is not needed.

CPU time is the thread CPU time of the model call (`time.thread_time`): psutil's process CPU
counters tick every 10 ms on Linux, far coarser than a sub-millisecond inference. Memory is the
process RSS from psutil, before and after the call.
"""

from __future__ import annotations

import cProfile
import gc
import heapq
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from types import CodeType
from typing import Any, TypeVar

import psutil

T = TypeVar("T")

_PROFILER_LOCK = threading.Lock()
# From Python 3.12, cProfile (on sys.monitoring) records every thread's calls. Before, each
# profiler sees only its own thread, so every entry is under the profiled call and the
# caller -> callee entries are not needed: without them, profiling and `getstats` cost about
# a quarter less (bench/telemetry_costs.py).
ONE_PROFILER_SEES_ALL_THREADS = sys.version_info >= (3, 12)
_PROCESS = psutil.Process()
_MB = 1024 * 1024


@dataclass
class Capture:
    """What the request path measured; `summarize` turns it into the record's `ml.profile`."""

    profile: cProfile.Profile | None
    root: CodeType | None
    reason: str | None
    inference_ms: float
    cpu_ms: float
    rss_bytes: int
    rss_delta_bytes: int
    # Whether the profile has caller -> callee entries, needed to tell the call tree from
    # other threads' calls (see ONE_PROFILER_SEES_ALL_THREADS).
    subcalls: bool = True

    @property
    def profiled(self) -> bool:
        return self.profile is not None


def code_of(fn: Callable[..., Any]) -> CodeType:
    """The code object of a function or a bound method."""
    code = getattr(fn, "__code__", None) or getattr(getattr(fn, "__func__", None), "__code__", None)
    if not isinstance(code, CodeType):
        raise TypeError(f"{fn!r} is not a Python function")
    return code


class InferenceProfiler:
    def __init__(
        self,
        enabled: bool = True,
        sample_rate: float = 1.0,
        sampler: Callable[[], float] = random.random,
    ) -> None:
        self.enabled = enabled
        self.sample_rate = sample_rate
        self._sampler = sampler

    def _skip_reason(self) -> str | None:
        if not self.enabled:
            return "profiling disabled"
        if self._sampler() >= self.sample_rate:
            return "not sampled"
        return None

    def run(self, fn: Callable[..., T], *args: Any) -> tuple[T, Capture]:
        reason = self._skip_reason()
        profile: cProfile.Profile | None = None
        locked = reason is None and _PROFILER_LOCK.acquire(blocking=False)
        if reason is None and not locked:
            reason = "profiler busy"
        rss_before = _PROCESS.memory_info().rss
        gc_was_enabled = gc.isenabled()
        try:
            if locked:
                gc.disable()
                # Python functions only: C calls (len, isinstance...) would double the overhead;
                # their time still shows in the tottime of the Python function calling them.
                profile = cProfile.Profile(builtins=False, subcalls=ONE_PROFILER_SEES_ALL_THREADS)
                try:
                    profile.enable()
                except ValueError:  # another profiling tool holds sys.monitoring (3.12+)
                    profile, reason = None, "another profiler is active"
            cpu_start, start = time.thread_time(), time.perf_counter()
            try:
                result = fn(*args)
            finally:
                if profile is not None:
                    profile.disable()
                elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
        finally:
            if locked:
                if gc_was_enabled:
                    gc.enable()
                _PROFILER_LOCK.release()
        rss_after = _PROCESS.memory_info().rss
        return result, Capture(
            profile=profile,
            root=code_of(fn) if profile is not None else None,
            reason=reason,
            inference_ms=elapsed * 1000,
            cpu_ms=cpu * 1000,
            rss_bytes=rss_after,
            rss_delta_bytes=rss_after - rss_before,
            subcalls=ONE_PROFILER_SEES_ALL_THREADS,
        )


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


# Call trees verified across requests: id(root) -> the code ids last found to form exactly the
# root's call tree. When a profile holds exactly that set again, every entry is under the root
# and the walk of the call tree is skipped (3.12+ only: before, there is no walk). Bounded: a
# service profiles a handful of model calls, not an open set of code.
_VERIFIED_TREES: dict[int, frozenset[int]] = {}
_MAX_VERIFIED_TREES = 4096
_CODE = attrgetter("code")
_CALLS = attrgetter("callcount")
_RECURSIVE_CALLS = attrgetter("reccallcount")
_CUMULATIVE = attrgetter("totaltime")
_SELF = attrgetter("inlinetime")


def _call_tree(entries: dict[int, Any], root: int) -> set[int]:
    tree, todo = {root}, deque([root])
    while todo:
        for sub in entries[todo.popleft()].calls or ():
            callee = id(sub.code)
            if callee not in tree and callee in entries:
                tree.add(callee)
                todo.append(callee)
    return tree


Totals = tuple[CodeType, int, int, float, float]  # code, calls, primitive calls, tottime, cumtime


def _tree_totals(entries: dict[int, Any], root: int) -> list[Totals]:
    """Per-function totals over the root's call tree only (the slow path, see _VERIFIED_TREES)."""
    tree = _call_tree(entries, root)
    if len(tree) == len(entries) and len(_VERIFIED_TREES) < _MAX_VERIFIED_TREES:
        _VERIFIED_TREES[root] = frozenset(entries)
    # Functions also called from outside the tree (another thread's calls, 3.12+).
    called_from_outside = {
        id(sub.code) for key, e in entries.items() if key not in tree for sub in e.calls or ()
    }
    totals: list[Totals] = []
    for key in tree:
        e = entries[key]
        if key != root and key in called_from_outside:
            # Count only the calls made from inside the tree. Summing sub-entries can overcount
            # nested re-entry, so they serve only this case.
            subs = [
                sub for caller in tree for sub in entries[caller].calls or () if id(sub.code) == key
            ]
            nc = sum(sub.callcount for sub in subs)
            cc = nc - sum(sub.reccallcount for sub in subs)
            tt = sum(sub.inlinetime for sub in subs)
            ct = sum(sub.totaltime for sub in subs)
            totals.append((e.code, nc, cc, tt, ct))
        else:
            totals.append(
                (e.code, e.callcount, e.callcount - e.reccallcount, e.inlinetime, e.totaltime)
            )
    return totals


def _by_cumulative_then_self(
    entries: Iterable[T],
    top_n: int,
    cumulative: Callable[[T], float],
    self_time: Callable[[T], float],
    code: Callable[[T], Any],
) -> list[T]:
    """The top N by cumulative time (the profiled call first: its cumulative time is the whole
    tree's), then those of the top N by self time not already there. Cumulative time alone
    keeps the call chain of wrappers and misses where the time is spent: on one
    `/predict_proba`, 8 of the 10 functions with the most self time were not in it."""
    listed = list(entries)
    chosen = heapq.nlargest(top_n, listed, key=cumulative)
    seen = {id(code(e)) for e in chosen}
    return chosen + [
        e for e in heapq.nlargest(top_n, listed, key=self_time) if id(code(e)) not in seen
    ]


def summarize(capture: Capture, top_n: int) -> dict[str, Any]:
    """The profile part of a record: call counts and the top functions by cumulative time, then
    by self time.

    Works on the profiler's raw entries (`getstats`: per function, with per-callee sub-entries)
    rather than `pstats`, which would format a label for every function and build dictionaries
    that are thrown away. Only the top N get labels; the call-tree walk is skipped when the
    profile holds the same functions as the last verified tree (`_VERIFIED_TREES`).
    """
    summary: dict[str, Any] = {
        "profiled": capture.profiled,
        "inference_ms": capture.inference_ms,
        "cpu_ms": capture.cpu_ms,
        "rss_mb": capture.rss_bytes / _MB,
        "rss_delta_mb": capture.rss_delta_bytes / _MB,
    }
    if capture.profile is None or capture.root is None:
        summary["reason"] = capture.reason
        return summary
    stats = capture.profile.getstats()
    root = id(capture.root)
    if not capture.subcalls or _VERIFIED_TREES.get(root) == frozenset(map(id, map(_CODE, stats))):
        # Every entry is under the root (always, before 3.12); map/attrgetter keep this in C.
        calls = sum(map(_CALLS, stats))
        primitive = calls - sum(map(_RECURSIVE_CALLS, stats))
        chosen = _by_cumulative_then_self(stats, top_n, _CUMULATIVE, _SELF, _CODE)
        top = [(e.code, e.callcount, e.totaltime, e.inlinetime) for e in chosen]
    else:
        # Keyed by id(code): hashing a code object hashes its bytecode and constants.
        entries = {id(e.code): e for e in stats if isinstance(e.code, CodeType)}
        if root not in entries:
            summary.update(function_calls=0, primitive_calls=0, top_functions=[])
            return summary
        totals = _tree_totals(entries, root)
        calls = sum(t[1] for t in totals)
        primitive = sum(t[2] for t in totals)
        chosen_totals = _by_cumulative_then_self(
            totals, top_n, itemgetter(4), itemgetter(3), itemgetter(0)
        )
        top = [(t[0], t[1], t[4], t[3]) for t in chosen_totals]
    top_functions = []
    for code, nc, ct, tt in top:
        if not isinstance(code, CodeType):  # a built-in: not profiled (builtins=False)
            continue
        top_functions.append(
            {
                "function": code.co_name,
                "file": _short_path(code.co_filename),
                "line": code.co_firstlineno,
                "calls": nc,
                "tottime_ms": tt * 1000,
                "cumtime_ms": ct * 1000,
            }
        )
    summary.update(function_calls=calls, primitive_calls=primitive, top_functions=top_functions)
    return summary
