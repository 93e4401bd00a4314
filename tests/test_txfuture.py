"""``TxFuture`` is a ``concurrent.futures.Future`` in every way callers can see.

It keeps its state under a C lock and lets waiters through a latch instead of the base
class's ``threading.Condition`` (one future per transaction); these check it behaves as
the stdlib future does: states, errors, callbacks, timeouts, many waiters, the stdlib's
``wait``/``as_completed`` and ``asyncio.wrap_future``.
"""

import asyncio
import concurrent.futures as cf
import threading
import time

import pytest

from fastdatomic.connection import TxFuture


def _running():
    f = TxFuture()
    assert f.set_running_or_notify_cancel()
    return f


def _later(fn, delay=0.05):
    t = threading.Thread(target=lambda: (time.sleep(delay), fn()))
    t.start()
    return t


@pytest.mark.parametrize("make", [TxFuture, cf.Future], ids=["TxFuture", "stdlib"])
def test_states_as_the_stdlib_future(make):
    f = make()
    assert not f.done() and not f.running() and not f.cancelled()
    assert f.cancel() and f.cancelled() and f.done() and f.cancel()
    assert not f.set_running_or_notify_cancel()
    with pytest.raises(cf.CancelledError):
        f.result(0)
    g = make()
    assert g.set_running_or_notify_cancel() and g.running() and not g.cancel()
    with pytest.raises(RuntimeError):
        g.set_running_or_notify_cancel()
    with pytest.raises(cf.TimeoutError):
        g.result(timeout=0.01)
    g.set_result(None)
    assert g.done() and g.result() is None and g.exception() is None
    with pytest.raises(cf.InvalidStateError):
        g.set_result(1)
    with pytest.raises(cf.InvalidStateError):
        g.set_exception(ValueError())
    h = make()
    h.set_running_or_notify_cancel()
    err = ValueError("bad")
    h.set_exception(err)
    assert h.exception() is err
    with pytest.raises(ValueError, match="bad"):
        h.result()
    assert "state=finished raised ValueError" in repr(h)


def test_waiters_on_another_thread_all_wake():
    f = _running()
    got = []
    threads = [threading.Thread(target=lambda: got.append(f.result(5))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    f.set_result("r")
    for t in threads:
        t.join(5)
    assert got == ["r"] * 8
    c = TxFuture()
    seen = []

    def wait_cancelled():
        try:
            c.result(5)
        except cf.CancelledError:
            seen.append("cancelled")
    t = threading.Thread(target=wait_cancelled)
    t.start()
    time.sleep(0.05)
    assert c.cancel()
    t.join(5)
    assert seen == ["cancelled"]


def test_callbacks_once_in_order_and_after_done():
    f = _running()
    calls = []
    f.add_done_callback(lambda x: calls.append(("a", x.result())))
    f.add_done_callback(lambda x: 1 / 0)              # logged, does not stop the others
    f.add_done_callback(lambda x: calls.append(("b", x.result())))
    f.set_result(1)
    f.add_done_callback(lambda x: calls.append(("late", x.result())))
    assert calls == [("a", 1), ("b", 1), ("late", 1)]
    c = TxFuture()
    c.add_done_callback(lambda x: calls.append(("cancelled", x.cancelled())))
    c.cancel()
    assert calls[-1] == ("cancelled", True)


def test_stdlib_wait_and_as_completed():
    fs = [_running() for _ in range(5)]
    _later(lambda: [f.set_result(i) for i, f in enumerate(fs)])
    assert sorted(f.result() for f in cf.as_completed(fs, timeout=5)) == [0, 1, 2, 3, 4]
    a, b = _running(), _running()
    _later(lambda: b.set_exception(KeyError("k")))
    done, not_done = cf.wait([a, b], timeout=5, return_when=cf.FIRST_EXCEPTION)
    assert done == {b} and not_done == {a}
    p = TxFuture()
    _later(lambda: p.cancel() and p.set_running_or_notify_cancel())
    done, _ = cf.wait([p], timeout=5)
    assert done == {p}


def test_await_through_asyncio():
    async def main():
        f = _running()
        _later(lambda: f.set_result(42))
        g = _running()
        _later(lambda: g.set_exception(LookupError("x")))
        with pytest.raises(LookupError):
            await g
        return await f
    assert asyncio.run(main()) == 42
