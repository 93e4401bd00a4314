"""A peer asks again when the transactor does not know a database yet.

Storage shows a database as soon as the transactor commits its creation; the transactor
serves it once that commit is published on its event loop, a moment later. A peer that
loaded the database in between got "no such database" for its SUBSCRIBE and, until its
next reconnect, received none of the database's novelty. Its SUBSCRIBE now goes again
(every ``SUBSCRIBE_RETRY`` s, for up to ``SUBSCRIBE_WAIT`` s).

The peer system here is real (its loop thread, storage); its requests to the transactor
are answered by the test, so the moment between commit and publication is exact.
"""

import concurrent.futures
import os
import threading

import pytest

from fastdatomic import errors as E
from fastdatomic import peer as peer_mod
from fastdatomic.peer import peer_system, shutdown_peers
from fastdatomic.storage import open_storage
from fastdatomic.transactor import protocol as P


@pytest.fixture
def system(tmp_path):
    path = str(tmp_path / "data")
    os.makedirs(path)
    open_storage("dev", path=path).close()
    system = peer_system(path)
    yield system
    system.client = None                   # the stand-in below has no socket to close
    shutdown_peers()


def _on_loop(system, fn, *args):
    done = concurrent.futures.Future()
    system.loop.call_soon_threadsafe(lambda: done.set_result(fn(*args)))
    return done.result(5)


def _subscribe_answering(system, monkeypatch, answers, deadline_s=5.0):
    """Subscribe a database through ``_subscribe`` while SUBSCRIBE requests are answered
    from ``answers`` (an exception or a reply each); returns (pdb, requests sent)."""
    sent = []

    def send_request(kind, msg, fut=None):
        assert kind == P.SUBSCRIBE
        sent.append(msg)
        fut = concurrent.futures.Future()
        answer = answers[min(len(sent), len(answers)) - 1]
        if isinstance(answer, BaseException):
            fut.set_exception(answer)
        else:
            fut.set_result(answer)
        return fut

    monkeypatch.setattr(system, "_send_request", send_request)
    monkeypatch.setattr(peer_mod, "SUBSCRIBE_WAIT", deadline_s)
    pdb = peer_mod._PeerDb(system, "orders", type("Db", (), {"basis_t": 0})())
    system.client = object()               # "connected": the answers come from the test
    _on_loop(system, system._subscribe, pdb)
    return pdb, sent


def test_subscribe_asks_again_until_the_transactor_serves_the_database(system, monkeypatch):
    not_yet = E.DatabaseNotFoundError("database 'orders' does not exist")
    pdb, sent = _subscribe_answering(system, monkeypatch,
                                     [not_yet, not_yet, {"basis_t": 0, "db_id": "x"}])
    assert pdb.subscribed.wait(5)
    assert len(sent) == 3                  # two refusals, then live
    assert pdb.subscribed_on is system.client


def test_subscribe_gives_up_after_the_wait_and_reads_storage(system, monkeypatch):
    never = E.DatabaseNotFoundError("database 'orders' does not exist")
    pdb, sent = _subscribe_answering(system, monkeypatch, [never], deadline_s=0.2)
    assert pdb.subscribed.wait(5)          # connect() stops waiting; db() reads storage
    assert 2 <= len(sent) <= 0.2 / peer_mod.SUBSCRIBE_RETRY + 2
    n = len(sent)
    threading.Event().wait(0.1)
    assert len(sent) == n                  # and nothing is sent any more


def test_other_subscribe_errors_are_not_retried(system, monkeypatch):
    pdb, sent = _subscribe_answering(system, monkeypatch, [E.ProtocolError("bad request")])
    assert pdb.subscribed.wait(5)
    assert len(sent) == 1
