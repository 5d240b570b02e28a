from __future__ import annotations

import cProfile
import time

from inferlog.telemetry import profiler
from inferlog.telemetry.profiler import Capture, InferenceProfiler, code_of, summarize


def shared(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def root_call() -> int:
    return shared(10) + shared(20)


def other_work() -> int:
    return shared(5) + shared(5) + shared(5)


def capture_of(profile: cProfile.Profile, root: object) -> Capture:
    return Capture(profile, code_of(root), None, 1.0, 1.0, 100 * 2**20, 0, subcalls=True)  # type: ignore[arg-type]


def test_only_the_call_tree_under_the_root_is_kept() -> None:
    # Like another thread's calls on 3.12+: work outside the root while the profiler is on.
    profile = cProfile.Profile()
    profile.enable()
    other_work()
    root_call()
    profile.disable()
    summary = summarize(capture_of(profile, root_call), top_n=50)
    functions = {f["function"]: f for f in summary["top_functions"]}
    assert "other_work" not in functions
    assert functions["root_call"]["calls"] == 1
    assert functions["shared"]["calls"] == 2  # not 5: other_work's three calls stay out
    assert summary["top_functions"][0]["function"] == "root_call"


def profile_of(*calls: object) -> Capture:
    profile = cProfile.Profile(builtins=False)  # with caller -> callee entries, as on 3.12+
    profile.enable()
    for call in calls:
        call()  # type: ignore[operator]
    profile.disable()
    return capture_of(profile, root_call)


def calls_by_function(summary: dict[str, object]) -> dict[str, int]:
    return {f["function"]: f["calls"] for f in summary["top_functions"]}  # type: ignore[attr-defined]


def test_a_verified_call_tree_is_reused_and_foreign_calls_still_stay_out() -> None:
    profiler._VERIFIED_TREES.clear()
    first = summarize(profile_of(root_call), top_n=50)
    assert profiler._VERIFIED_TREES[id(code_of(root_call))]  # every entry was under the root
    again = summarize(profile_of(root_call), top_n=50)  # the walk is skipped
    assert calls_by_function(again) == calls_by_function(first) == {"root_call": 1, "shared": 2}
    assert again["function_calls"] == first["function_calls"] == 3
    mixed = summarize(profile_of(other_work, root_call), top_n=50)  # the set differs: walked
    assert calls_by_function(mixed) == {"root_call": 1, "shared": 2}


def countdown(n: int) -> int:
    return n if n == 0 else countdown(n - 1)


def recursive_root() -> int:
    return countdown(4) + shared(3)


def test_call_counts_are_totals_over_the_tree_and_recursion_is_not_primitive() -> None:
    _, capture = InferenceProfiler().run(recursive_root)
    summary = summarize(capture, top_n=50)
    # recursive_root once, countdown five times (one from outside itself), shared once.
    assert summary["function_calls"] == 7
    assert summary["primitive_calls"] == 3
    assert calls_by_function(summary) == {"recursive_root": 1, "countdown": 5, "shared": 1}


def test_top_n_keeps_the_top_by_cumulative_then_the_top_by_self_time() -> None:
    _, capture = InferenceProfiler().run(root_call)
    top = summarize(capture, top_n=1)["top_functions"]
    # root_call has the most cumulative time, shared (called twice) the most self time.
    assert [f["function"] for f in top] == ["root_call", "shared"]


def test_a_busy_profiler_runs_the_call_unprofiled_and_says_why() -> None:
    with profiler._PROFILER_LOCK:
        result, capture = InferenceProfiler().run(root_call)
    assert result == root_call()
    assert capture.profile is None
    assert capture.reason == "profiler busy"
    summary = summarize(capture, 10)
    assert summary["profiled"] is False
    assert summary["reason"] == "profiler busy"
    assert "top_functions" not in summary
    assert "function_calls" not in summary
    assert summary["rss_mb"] > 10  # this interpreter's resident memory, in MiB


def test_sampling_and_the_switch_decide_what_is_profiled() -> None:
    draws = iter([0.2, 0.7])
    sampled = InferenceProfiler(sample_rate=0.5, sampler=lambda: next(draws))
    assert sampled.run(root_call)[1].profiled
    assert sampled.run(root_call)[1].reason == "not sampled"
    assert InferenceProfiler(enabled=False).run(root_call)[1].reason == "profiling disabled"


def test_an_unprofiled_call_still_measures_time_and_memory() -> None:
    _, busy = InferenceProfiler(enabled=False).run(shared, 2_000_000)
    assert busy.cpu_ms > 0.2 * busy.inference_ms > 0  # computing: its thread's CPU time
    _, waiting = InferenceProfiler(enabled=False).run(time.sleep, 0.05)
    assert waiting.inference_ms >= 50
    assert waiting.cpu_ms < 10  # waiting costs the thread no CPU
    assert busy.rss_bytes > 10 * 2**20


def test_a_profile_that_recorded_nothing_counts_zero_calls() -> None:
    empty = cProfile.Profile()
    summary = summarize(capture_of(empty, root_call), top_n=10)
    assert summary["profiled"] is True
    assert summary["function_calls"] == 0
    assert summary["top_functions"] == []


def test_garbage_collection_is_paused_during_the_profiled_call_only() -> None:
    import gc

    seen = []
    _, capture = InferenceProfiler().run(lambda: seen.append(gc.isenabled()))
    assert seen == [False]
    assert capture.profiled
    assert gc.isenabled()
    InferenceProfiler(enabled=False).run(lambda: seen.append(gc.isenabled()))
    assert seen[-1] is True  # unprofiled calls are left alone
