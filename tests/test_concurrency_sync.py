"""concurrency() and rate_limit() in one process: slots, all-or-none, queue order, timeouts, async."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import warnings
from collections.abc import Iterator

import pytest

from nbflow._app.wiring import build_runtime
from nbflow._core.clock import FakeClock
from nbflow._core.settings import Settings
from nbflow._engine.runtime import Runtime, use_runtime
from nbflow.concurrency import asyncio as aconc
from nbflow.concurrency import limits
from nbflow.concurrency.sync import concurrency, rate_limit
from nbflow.exceptions import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencyLimitError,
    ConcurrencyLimitNotFoundError,
)


@pytest.fixture
def home(tmp_path) -> Iterator[Runtime]:
    runtime = build_runtime(Settings(home=tmp_path / "home", store_enabled=False), console=False)
    with use_runtime(runtime):
        yield runtime


@pytest.fixture
def fake_home(tmp_path) -> Iterator[Runtime]:
    """Sleeps return at once and move the clock: slot decay and timeouts without waiting."""
    runtime = build_runtime(
        Settings(home=tmp_path / "home", store_enabled=False), clock=FakeClock(), console=False
    )
    with use_runtime(runtime):
        yield runtime


def spawn(fn, *args) -> threading.Thread:
    """A started thread that runs in this test's runtime (threads do not inherit context variables)."""
    ctx = contextvars.copy_context()
    thread = threading.Thread(target=ctx.run, args=(fn, *args))
    thread.start()
    return thread


class Peak:
    """How many threads are inside at once, and the most there ever were."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.lock = threading.Lock()

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc) -> None:
        with self.lock:
            self.now -= 1


def test_threads_never_exceed_the_limit_and_all_finish(home):
    limits.create("api", 3)
    peak, done = Peak(), []

    def work(i: int) -> None:
        for _ in range(5):
            with concurrency("api"):
                with peak:
                    time.sleep(0.002)
        done.append(i)

    threads = [spawn(work, i) for i in range(12)]
    for t in threads:
        t.join()
    assert sorted(done) == list(range(12))
    assert 1 <= peak.most <= 3
    assert limits.inspect("api").active_slots == 0


def test_inspect_names_the_holder_while_held_and_nothing_after(home):
    limits.create("db", 2)
    with concurrency("db", occupy=2):
        shown = limits.inspect("db")
        assert shown.active_slots == 2
        [holder] = shown.holders
        assert holder.occupy == 2 and "MainThread" in holder.holder
    assert limits.inspect("db").holders == ()


def test_several_names_are_taken_all_or_none(home):
    limits.create("a", 1)
    limits.create("b", 1)
    with concurrency("b"):
        with pytest.raises(AcquireConcurrencySlotTimeoutError, match="concurrency limit 'b'"):
            with concurrency(["a", "b"], timeout_seconds=0.05):
                pass
        assert limits.inspect("a").active_slots == 0  # nothing half-taken
    with concurrency(["a", "b"]):
        a, b = limits.inspect("a"), limits.inspect("b")
        assert a.active_slots == b.active_slots == 1
        assert a.holders[0].lease_id == b.holders[0].lease_id


def test_timeout_names_the_limit_and_is_a_timeout_error(home):
    limits.create("slow-api", 1)
    with concurrency("slow-api"):
        with pytest.raises(TimeoutError, match=r"concurrency limit 'slow-api' within 0\.1 second\(s\) \(1/1 slots in use\)"):
            with concurrency("slow-api", timeout_seconds=0.1):
                pass
    assert limits.inspect("slow-api").waiters == ()  # the timed-out waiter left the queue


def test_a_newcomer_does_not_jump_the_queue(home):
    """A request for both of two slots waits behind one holder; a one-slot newcomer may not take the
    free slot meanwhile (else a stream of small requests could starve the big one forever)."""
    limits.create("pool", 2)
    release_first = threading.Event()
    got_both = threading.Event()

    def first_holder() -> None:
        with concurrency("pool"):
            release_first.wait(10)

    def big() -> None:
        with concurrency("pool", occupy=2):
            got_both.set()

    threads = [spawn(first_holder)]
    while limits.inspect("pool").active_slots < 1:
        time.sleep(0.005)
    threads.append(spawn(big))
    while not limits.inspect("pool").waiters:
        time.sleep(0.005)
    with pytest.raises(AcquireConcurrencySlotTimeoutError, match=r"1/2 slots in use, 2 wanted by earlier waiters"):
        with concurrency("pool", timeout_seconds=0):
            pass
    release_first.set()
    for t in threads:
        t.join(10)
    assert got_both.is_set()


def test_waiters_are_served_in_arrival_order(home):
    limits.create("line", 1)
    order: list[int] = []
    arrived = []

    def wait_in_line(i: int) -> None:
        with concurrency("line"):
            order.append(i)

    with concurrency("line"):
        for i in range(4):
            arrived.append(spawn(wait_in_line, i))
            while len(limits.inspect("line").waiters) < i + 1:  # queued before the next one arrives
                time.sleep(0.005)
    for t in arrived:
        t.join()
    assert order == [0, 1, 2, 3]


def test_unknown_name_warns_once_and_does_not_limit(home):
    with pytest.warns(UserWarning, match="No concurrency limit named 'never-made-1'.*strict=True") as caught:
        with concurrency("never-made-1"):
            pass
    assert caught[0].filename == __file__  # points at the user's line, not nbflow's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with concurrency("never-made-1"):  # second use: silent
            pass


def test_strict_unknown_name_raises_and_holds_nothing(home):
    limits.create("real", 1)
    with pytest.raises(ConcurrencyLimitNotFoundError, match="'never-made-2'.*nbflow concurrency-limit create never-made-2"):
        with concurrency(["real", "never-made-2"], strict=True):
            pass
    assert limits.inspect("real").active_slots == 0


def test_occupying_more_than_the_limit_is_a_clear_error(home):
    limits.create("small", 2)
    with pytest.raises(ConcurrencyLimitError, match=r"Cannot occupy 3 slot\(s\) of concurrency limit 'small': it has only 2"):
        with concurrency("small", occupy=3):
            pass
    shown = limits.inspect("small")
    assert shown.active_slots == 0 and shown.waiters == ()


@pytest.mark.parametrize("kwargs, message", [
    ({"occupy": 0}, "occupy must be a whole number"),
    ({"occupy": 1.5}, "occupy must be a whole number"),
    ({"timeout_seconds": -1}, "timeout_seconds must be None or a number"),
])
def test_bad_arguments_are_clear_errors(home, kwargs, message):
    limits.create("x", 1)
    with pytest.raises(ConcurrencyLimitError, match=message):
        with concurrency("x", **kwargs):
            pass


def test_deleted_limit_lets_holder_finish_and_waiters_go_ahead_unlimited(home):
    limits.create("doomed", 1)
    results: dict[str, object] = {}
    holding = threading.Event()
    finish = threading.Event()

    def holder() -> None:
        with concurrency("doomed"):
            holding.set()
            finish.wait(10)
        results["holder"] = "finished"

    def waiter(strict: bool) -> None:
        try:
            with concurrency("doomed", strict=strict):
                results[f"strict={strict}"] = "ran"
        except Exception as exc:
            results[f"strict={strict}"] = exc

    threads = [spawn(holder)]
    holding.wait(10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the lenient waiter's warning
        for strict in (False, True):
            threads.append(spawn(waiter, strict))
        while len(limits.inspect("doomed").waiters) < 2:
            time.sleep(0.005)
        limits.delete("doomed")
        for t in threads[1:]:
            t.join(10)
    finish.set()
    threads[0].join(10)
    assert results["strict=False"] == "ran"
    assert isinstance(results["strict=True"], ConcurrencyLimitNotFoundError)
    assert results["holder"] == "finished"


def test_reset_frees_held_slots_for_newcomers(home):
    limits.create("stuck", 1)
    with concurrency("stuck"):
        limits.reset("stuck")
        with concurrency("stuck", timeout_seconds=0):
            assert limits.inspect("stuck").active_slots == 1


def test_rate_limit_frees_slots_by_decay(fake_home):
    clock = fake_home.clock
    limits.create("calls", 2, slot_decay_per_second=0.5)  # a burst of 2, then one every 2 s
    start = clock.now()
    rate_limit("calls")
    rate_limit("calls")
    assert clock.now() == start  # the burst did not wait
    rate_limit("calls")
    rate_limit("calls")
    assert clock.now() - start >= 4.0 - 1e-6  # two more slots: two seconds of decay each
    assert limits.inspect("calls").active_slots == pytest.approx(2.0, abs=0.2)


def test_rate_limit_needs_a_limit_with_decay(home):
    limits.create("plain", 2)
    with pytest.raises(ConcurrencyLimitError, match="rate_limit\\(\\) needs a limit with slot decay.*--slot-decay-per-second"):
        rate_limit("plain")


def test_timeout_follows_the_runtime_clock(fake_home):
    limits.create("busy", 1)
    with concurrency("busy"):
        start = fake_home.clock.now()
        with pytest.raises(AcquireConcurrencySlotTimeoutError):
            with concurrency("busy", timeout_seconds=10):  # less than the 30 s lease: no expiry
                pass
        assert fake_home.clock.now() - start == pytest.approx(10, abs=0.2)


def test_async_twin_limits_coroutines_without_blocking_the_loop(home):
    limits.create("aio", 1)
    peak = Peak()
    ticks = []

    async def worker() -> None:
        async with aconc.concurrency("aio"):
            with peak:
                await asyncio.sleep(0.01)

    async def ticker() -> None:
        for _ in range(5):
            ticks.append(1)
            await asyncio.sleep(0.005)

    async def main() -> None:
        await asyncio.gather(*(worker() for _ in range(5)), ticker())

    asyncio.run(main())
    assert peak.most == 1
    assert len(ticks) == 5  # the loop kept running while workers waited
    assert limits.inspect("aio").active_slots == 0


def test_async_timeout_and_cancel_leave_the_queue(home):
    limits.create("aio2", 1)

    async def main() -> None:
        async with aconc.concurrency("aio2"):
            with pytest.raises(AcquireConcurrencySlotTimeoutError, match="'aio2'"):
                async with aconc.concurrency("aio2", timeout_seconds=0.05):
                    pass
            waiter = asyncio.ensure_future(aconc.concurrency("aio2").__aenter__())
            await asyncio.sleep(0.05)
            assert len(limits.inspect("aio2").waiters) == 1
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert limits.inspect("aio2").waiters == ()

    asyncio.run(main())


def test_async_rate_limit(fake_home):
    limits.create("arate", 1, slot_decay_per_second=1)

    async def main() -> None:
        await aconc.rate_limit("arate")
        await aconc.rate_limit("arate")

    start = fake_home.clock.now()
    asyncio.run(main())
    assert fake_home.clock.now() - start >= 1.0 - 1e-6


def test_unknown_name_warning_turned_error_holds_no_slot(home):
    limits.create("kept", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="'never-made-3'"):
            with concurrency(["kept", "never-made-3"]):
                pass
    assert limits.inspect("kept").active_slots == 0
