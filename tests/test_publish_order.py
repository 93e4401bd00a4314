"""The transactor publishes commits in commit order, whichever thread made them.

The writer thread's publications reach the event loop through ``call_soon_threadsafe``;
a commit the loop makes itself (``Pipeline.process_now``) must not overtake one of
those still waiting, or a peer would see ``t=N+1`` first and then skip ``t=N`` (it
ignores novelty older than what it has).
"""

import asyncio
import collections
import threading
from types import SimpleNamespace

from fastdatomic.transactor.server import Transactor


def _stub(loop):
    seen = []
    t = SimpleNamespace(loop=loop, loop_thread=threading.get_ident(),
                        to_publish=collections.deque(),
                        _publish=lambda name, entries, outcomes, event: seen.append(name))
    t._publish_queued = lambda: Transactor._publish_queued(t)
    t.publish = lambda *a: Transactor._publish_from_pipeline(t, *a)
    return t, seen


def test_loop_commit_waits_for_the_writers_earlier_publication():
    loop = asyncio.new_event_loop()
    try:
        t, seen = _stub(loop)
        writer = threading.Thread(target=t.publish, args=("t=1", [], [], None))
        writer.start()
        writer.join()
        assert seen == []                 # still waiting for the loop
        t.publish("t=2", [], [], None)    # a commit made on the loop, before it ran
        assert seen == ["t=1", "t=2"]
        loop.run_until_complete(asyncio.sleep(0))
        assert seen == ["t=1", "t=2"]     # the scheduled delivery finds nothing left
    finally:
        loop.close()


def test_writer_publications_arrive_in_order():
    loop = asyncio.new_event_loop()
    try:
        t, seen = _stub(loop)

        def writer():
            for i in range(100):
                t.publish(f"t={i}", [], [], None)

        th = threading.Thread(target=writer)
        th.start()
        th.join()
        loop.run_until_complete(asyncio.sleep(0))
        assert seen == [f"t={i}" for i in range(100)]
    finally:
        loop.close()
