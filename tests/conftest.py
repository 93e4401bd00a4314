"""Shared fixtures: storages of every backend, and a raw-datom writer for the db layer.

``FASTDATOMIC_TEST_PROTOCOL=dev`` runs the transaction and query suites through a real
transactor: one is started for the session over LMDB storage in a temporary directory,
and ``txfns_helper.fresh_conn``/``db_uri`` give each test a new database in it (see the
end of this file, and ``tests/test_through_transactor.py`` which runs them so).
"""

import itertools
import os
import uuid

import pytest

from fastdatomic.storage import open_storage, forget_mem_storage
from fastdatomic.types import Keyword

_counter = itertools.count()


@pytest.fixture(params=["mem", "dev"])
def storage(request, tmp_path):
    """A fresh, empty storage of each backend."""
    if request.param == "mem":
        name = f"test-{uuid.uuid4().hex}"
        st = open_storage("mem", name=name)
        yield st
        forget_mem_storage(name)
    else:
        st = open_storage("dev", path=str(tmp_path / "lmdb"))
        yield st
        st.close()


class RawTx:
    """Writes raw datoms through a DatabaseWriter, allocating t and entity ids like Datomic:
    one counter shared by t and new entity numbers."""

    def __init__(self, writer):
        self.w = writer

    def new_eid(self, partition=4):
        from fastdatomic.ids import entity_id
        n = self._n
        self._n += 1
        return entity_id(partition, n)

    def tx(self, build):
        """``build(self)`` returns ``[(e, a, v, added)]`` with ``a`` as id or ident."""
        db = self.w.db
        t = db.next_n
        self._n = t + 1
        datoms = []
        for e, a, v, added in build(self):
            a_id = db.entid_strict(a) if not isinstance(a, int) else a
            datoms.append((e, a_id, v, added))
        from fastdatomic.ids import t_to_tx
        from datetime import datetime, timezone
        datoms.append((t_to_tx(t), db.entid_strict(":db/txInstant"), datetime.now(timezone.utc), True))
        return self.w.commit(datoms, t, self._n)

    def attr(self, ident, vtype, many=False, unique=None, index=False, extra=()):
        from fastdatomic.db.schema import VALUE_TYPE_IDENTS
        vt = {str(kw)[len(":db.type/"):]: eid for eid, (kw, _) in VALUE_TYPE_IDENTS.items()}[vtype]

        def build(r):
            e = r.new_eid(0)
            out = [(e, ":db/ident", Keyword(ident), True), (e, ":db/valueType", vt, True),
                   (e, ":db/cardinality", 37 if many else 36, True)]
            if unique:
                out.append((e, ":db/unique", 39 if unique == "identity" else 38, True))
            if index:
                out.append((e, ":db/index", True, True))
            out.extend((e, a, v, True) for a, v in extra)
            return out
        return self.tx(build)


# --- FASTDATOMIC_TEST_PROTOCOL=dev: the suites again, through a real transactor ----------------

DEV = os.environ.get("FASTDATOMIC_TEST_PROTOCOL", "mem") == "dev"

# Tests that need the in-process system and cannot hold through a transactor process,
# by node id (without parameters) -> why. Tests registering a transaction function at
# test time are skipped by the register_tx_fn guard below instead.
DEV_SKIPS = {
    "tests/test_tx_errors.py::test_transaction_too_large":
        "monkeypatches tx.MAX_TX_DATOMS in the test process; the limit is the transactor's",
    "tests/test_tx_functions.py::test_db_fn_on_ident_entity_names_importable_function":
        "reads txfns_helper.CALLS of the test process; the function runs in the transactor",
    "tests/test_connection.py::test_mem_connection_runs_the_indexing_job_past_the_threshold":
        "mem-only: sets the in-process writer's memory_index_threshold (conn._tx)",
}


def pytest_collection_modifyitems(config, items):
    if not DEV:
        return
    for item in items:
        reason = DEV_SKIPS.get(item.nodeid.split("[", 1)[0])
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"under FASTDATOMIC_TEST_PROTOCOL=dev: {reason}"))


def _register_tx_fn_in_test_process(name, fn):
    pytest.skip("under FASTDATOMIC_TEST_PROTOCOL=dev: registers a transaction function in the "
                "test process; the transactor has only its FASTDATOMIC_TX_FNS (its classpath)")


@pytest.fixture
def peers_and_transactors_stopped():
    """After the test: close this process's peer systems, then stop the transactors it
    started (``pytestmark = pytest.mark.usefixtures("peers_and_transactors_stopped")``)."""
    yield
    from fastdatomic.peer import shutdown_peers
    from transactor_helper import stop_all
    shutdown_peers()
    stop_all()


@pytest.fixture(scope="session", autouse=True)
def dev_transactor(tmp_path_factory):
    """Under ``FASTDATOMIC_TEST_PROTOCOL=dev``: one transactor for the whole session, with
    ``txfns_helper`` on its classpath; its data-dir goes to ``FASTDATOMIC_TEST_DEV_DIR``."""
    if not DEV:
        yield None
        return
    import fastdatomic as fd
    from transactor_helper import ROOT, TransactorProcess, write_config
    work = tmp_path_factory.mktemp("dev-transactor")
    data_dir = str(work / "data")
    tests_dir = os.path.join(ROOT, "tests")
    env = {"FASTDATOMIC_TX_FNS": "txfns_helper",
           "PYTHONPATH": os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")]))}
    proc = TransactorProcess(write_config(str(work), data_dir, "session", lmdb_map_size="4g"), env=env)
    proc.wait_started()
    os.environ["FASTDATOMIC_TEST_DEV_DIR"] = data_dir
    register = fd.register_tx_fn
    fd.register_tx_fn = _register_tx_fn_in_test_process
    try:
        yield proc
    finally:
        fd.register_tx_fn = register
        os.environ.pop("FASTDATOMIC_TEST_DEV_DIR", None)
        died = proc.proc.poll()
        status = proc.stop()
        if died is not None or status != 0:
            raise AssertionError(f"the session transactor exited with status {status} "
                                 f"(before the end: {died is not None}):\n" + "\n".join(proc.output[-50:]))
