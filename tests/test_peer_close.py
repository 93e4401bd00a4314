"""A peer system ends cleanly: its loop thread stops before the interpreter finalizes, and
no request is left waiting for a loop that no longer runs.

The peer's uvloop runs in a daemon thread. Left running at exit, one of its timers could
fire after the interpreter state was freed, and uvloop's callback then crashed the process
(SIGSEGV in ``PyGILState_Ensure``, about one exit in thirty of a script that had used a
transactor). Real transactor process, loopback.
"""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import fastdatomic as fd
from fastdatomic.errors import TransactorUnavailableError
from fastdatomic.peer import peer_system
from transactor_helper import ROOT, start_transactor

SCHEMA = '[{:db/ident :c/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one}]'


pytestmark = pytest.mark.usefixtures("peers_and_transactors_stopped")


def test_exit_hooks_stop_every_peer_loop_thread(tmp_path):
    # The exit hooks (atexit) must end the loop threads, not the interpreter's teardown.
    script = textwrap.dedent(f"""
        import atexit, os, sys
        sys.path.insert(0, {os.path.join(ROOT, 'src')!r})
        from fastdatomic.peer import peer_system
        from fastdatomic.storage import open_storage
        threads = []
        for i in range(3):
            path = os.path.join({str(tmp_path)!r}, f"s{{i}}")
            os.makedirs(path)
            open_storage("dev", path=path).close()
            threads.append(peer_system(path).thread)
        assert all(t.is_alive() for t in threads)
        atexit._run_exitfuncs()
        print("alive after exit hooks:", sum(t.is_alive() for t in threads), flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "alive after exit hooks: 0" in out.stdout, out.stdout + out.stderr


def test_close_answers_every_request_and_refuses_new_ones(tmp_path):
    tx = start_transactor(str(tmp_path))
    uri = f"fastdatomic:dev://{tmp_path}/data/db"
    fd.create_database(uri)
    conn = fd.connect(uri)
    conn.transact(SCHEMA)
    system = peer_system(str(tmp_path / "data"))
    os.kill(tx.pid, signal.SIGSTOP)          # what is sent now stays unanswered
    try:
        in_flight = conn.transact_async([{":c/n": 1}])
        system.close()
        system.thread.join(5)
        assert not system.thread.is_alive()
        with pytest.raises(TransactorUnavailableError) as err:
            in_flight.result(5)
        assert err.value.data["outcome"] in ("unknown", "not-committed")
        # After close nothing is sent, and the caller is told at once, not at its timeout.
        with pytest.raises(TransactorUnavailableError) as err:
            conn.transact_async([{":c/n": 2}]).result(5)
        assert err.value.data["outcome"] == "not-committed"
    finally:
        os.kill(tx.pid, signal.SIGCONT)
