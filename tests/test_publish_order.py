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


def test_a_failed_publication_closes_the_connections_that_missed_it():
    # A peer that silently missed a commit's novelty would skip it for good (it ignores
    # novelty older than what it has): its connection is closed, it reconnects and the
    # log catches it up. Other databases' peers and later commits are unaffected.
    loop = asyncio.new_event_loop()
    try:
        failed = []

        class Session:
            closed = False

            def __init__(self, name):
                self.name = name

            def fail(self, err):
                self.closed = True
                failed.append((self.name, str(err)))

        sub, requester, other = Session("subscriber"), Session("requester"), Session("other")
        seen = []

        def publish(name, entries, outcomes, event):
            if name == "broken":
                raise ValueError("unencodable")
            seen.append(name)

        t = SimpleNamespace(loop=loop, loop_thread=threading.get_ident(),
                            to_publish=collections.deque(), _publish=publish,
                            subscribers={"broken": {sub}, "fine": {other}})
        t._drop_unpublished = lambda item, err: Transactor._drop_unpublished(t, item, err)
        t._publish_queued = lambda: Transactor._publish_queued(t)
        outcome = SimpleNamespace(request=SimpleNamespace(reply=(requester, 7)))
        Transactor._publish_from_pipeline(t, "broken", [], [outcome], None)
        Transactor._publish_from_pipeline(t, "fine", [], [], None)
        assert sorted(n for n, _ in failed) == ["requester", "subscriber"]
        assert all("cannot publish a commit of database broken" in e for _, e in failed)
        assert not other.closed and seen == ["fine"]
    finally:
        loop.close()
