"""``Pipeline.process_now``: the event loop commits itself only when that cannot reorder
anything (writer idle, nothing queued) and the read is small."""

import threading

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
