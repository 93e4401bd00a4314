"""``Pipeline.process_now``: the event loop commits itself only when that cannot reorder
anything (writer idle, nothing queued) and the read is small."""

import threading
import time
from types import SimpleNamespace

from fastdatomic.db import catalog
from fastdatomic.storage import open_storage
from fastdatomic.transactor.pipeline import INLINE_MAX_BYTES, Pipeline, TxRequest


def _pipeline(name):
    st = open_storage("mem", name=name)
    catalog.create_database(st, "db")
    published = []

    def publish(db, log, outcomes, event):
        published.extend((threading.get_ident(), o) for o in outcomes)

    p = Pipeline(st, fence=lambda: [], publish=publish, fatal=print)
    p.load()
    return p, published


def _tx(doc, nbytes=100):
    return TxRequest("tx", "db", [[":db/add", "e", ":db/doc", doc]], nbytes=nbytes)


def test_idle_pipeline_commits_on_the_calling_thread():
    p, published = _pipeline("inline-idle")
    assert p.process_now([_tx("a"), _tx("b")])
    assert [o.error for _, o in published] == [None, None]
    assert {tid for tid, _ in published} == {threading.get_ident()}
    ts = [o.result["t"] for _, o in published]
    assert ts == sorted(ts) and p.dbs["db"].writer.db.basis_t == ts[-1]


def test_declines_while_something_is_queued_and_keeps_the_order():
    p, published = _pipeline("inline-queued")
    p.submit(_tx("first"))                 # queued; the writer thread is not started yet
    assert not p.process_now([_tx("second")])
    assert published == []
    p.submit(_tx("second"))
    p.start()
    p.stop()
    docs = [o.request.tx_data[0][3] for _, o in published]
    ts = [o.result["t"] for _, o in published]
    assert docs == ["first", "second"] and ts == sorted(ts)


def test_declines_while_the_writer_holds_a_batch():
    p, published = _pipeline("inline-busy")
    with p.writing:
        assert not p.process_now([_tx("a")])
    assert published == []
    assert p.process_now([_tx("a")])


def test_leaves_a_bulk_read_to_the_writer_thread():
    p, published = _pipeline("inline-bulk")
    assert not p.process_now([_tx("big", nbytes=INLINE_MAX_BYTES + 1)])
    assert published == []


# --- the server side: one loop iteration's reads, from every peer, in one batch -----------

def _server(tmp_path):
    from fastdatomic.transactor.config import load_config
    from fastdatomic.transactor.server import Transactor
    from transactor_helper import write_config
    t = Transactor(load_config(write_config(str(tmp_path), str(tmp_path / "data"))))
    batches = []
    t.pipeline = SimpleNamespace(process_now=lambda reqs: batches.append(list(reqs)) or True,
                                 submit_many=lambda reqs: batches.append(list(reqs)))
    return t, batches


class _Transport:
    def get_extra_info(self, name):
        return None

    def write(self, data):
        pass

    def get_write_buffer_size(self):
        return 0


def _session(t):
    from fastdatomic.transactor.server import PeerSession
    s = PeerSession(t)
    s.transport = _Transport()       # past the handshake (connection_made sends CHALLENGE)
    s.authed = True
    return s


def _transact_frame(req_id, doc):
    import uuid
    from fastdatomic._core.frame import encode_frame
    from fastdatomic.peer import _transact_payload
    from fastdatomic.transactor import protocol as P
    payload = _transact_payload("db", uuid.uuid4(), None, [[":db/add", "e", ":db/doc", doc]], True)
    return encode_frame(P.TRANSACT_BIN, req_id, payload)


def test_reads_of_one_loop_iteration_from_several_peers_are_one_batch(tmp_path):
    """Each peer's read used to become its own commit (its own fsync) when the loop
    committed inline: N peers with one transaction each cost N commits in a row."""
    import asyncio
    from fastdatomic._core.frame import encode_frame
    from fastdatomic.transactor import protocol as P
    t, batches = _server(tmp_path)
    loop = asyncio.new_event_loop()
    try:
        a, b = _session(t), _session(t)

        def reads():           # as the loop delivers them: one poll, two sockets
            a.data_received(_transact_frame(1, "from a"))
            b.data_received(_transact_frame(7, "from b") +
                            encode_frame(P.CREATE_DB, 8, P.dumps({"db": "other"})))
            assert batches == []            # nothing yet: after the reads
        loop.call_soon(reads)
        loop.run_until_complete(asyncio.sleep(0))
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert len(batches) == 1
    got = [(r.op, r.reply[1]) for r in batches[0]]
    # in arrival order, the catalog change too (it used to jump ahead of the transactions)
    assert got == [("tx", 1), ("tx", 7), ("create", 8)]


def test_after_a_slow_batch_the_loop_leaves_commits_to_the_writer(monkeypatch):
    """A slow disk or transaction function must not keep the event loop from serving
    peers commit after commit: past INLINE_MAX_SECONDS the writer thread takes over."""
    from fastdatomic.transactor import pipeline as pl
    p, published = _pipeline("inline-slow")
    monkeypatch.setattr(pl, "INLINE_MAX_SECONDS", 0.0)       # every batch counts as slow
    assert p.process_now([_tx("a")])
    assert not p.process_now([_tx("b")])
    monkeypatch.setattr(pl, "INLINE_MAX_SECONDS", 60.0)
    p.start()
    p.submit(_tx("b"))
    deadline = time.monotonic() + 10
    while (len(published) < 2 or p.writing.locked()) and time.monotonic() < deadline:
        time.sleep(0.01)                   # the writer's quick batch clears it again
    assert p.process_now([_tx("c")])
    p.stop()
    assert [o.request.tx_data[0][3] for _, o in published] == ["a", "b", "c"]


def test_catalog_changes_go_to_the_writer_thread():
    """Deleting a database deletes its whole log, chunk after fsync'd chunk: never on
    the event loop."""
    p, published = _pipeline("inline-catalog")
    assert not p.process_now([TxRequest("create", "other")])
    assert not p.process_now([_tx("a"), TxRequest("delete", "db")])
    assert published == []
