"""The transaction and query suites again, through a real transactor (issue 5).

Runs the selected test files in a subprocess with ``FASTDATOMIC_TEST_PROTOCOL=dev``:
``tests/conftest.py`` starts one transactor over LMDB storage for that session and
``txfns_helper.fresh_conn``/``db_uri`` give every test a new database in it, reached by a
networked peer (``fastdatomic:dev://...``). Every transaction crosses the wire (binary
tx-data, EDN text for what has no binary form) and comes back as novelty; every query runs on the peer's value. Tests that need the
in-process system are skipped there with their reason (``conftest.DEV_SKIPS``, and tests
registering a transaction function at test time).

By hand: ``FASTDATOMIC_TEST_PROTOCOL=dev .venv/bin/pytest <files>``.
"""

import glob
import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# In-process internals, not behaviour a peer could show differently.
NOT_THROUGH_TRANSACTOR = {
    "tests/test_tx_fast_path.py",     # the fast path against the general one, on one value
    "tests/test_query_parser.py",     # parsing only, no database
}


def selected_files():
    pats = ["tests/test_tx_*.py", "tests/test_idempotent_tx.py", "tests/test_connection.py",
            "tests/test_log_api.py", "tests/test_query_*.py", "tests/test_pull.py",
            "tests/test_entity.py", "tests/test_peer_parity.py"]
    files = sorted({os.path.relpath(f, ROOT) for p in pats for f in glob.glob(os.path.join(ROOT, p))})
    return [f for f in files if f not in NOT_THROUGH_TRANSACTOR]


@pytest.mark.skipif(os.environ.get("FASTDATOMIC_TEST_PROTOCOL") == "dev",
                    reason="already running through a transactor")
def test_transaction_and_query_suites_pass_through_a_real_transactor(tmp_path):
    files = selected_files()
    assert len(files) >= 20, files
    env = {**os.environ, "FASTDATOMIC_TEST_PROTOCOL": "dev"}
    env.pop("FASTDATOMIC_TEST_DEV_DIR", None)
    cmd = [sys.executable, "-m", "pytest", *files, "-q", "-x", "-p", "no:cacheprovider",
           "--basetemp", str(tmp_path / "run"), "-o", "faulthandler_timeout=60"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        out, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        # SIGINT, not SIGKILL: pytest then tears its fixtures down, the transactor included.
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"the suites through the transactor did not finish in 600 s:\n{out[-8000:]}")
    assert proc.returncode == 0, f"suites through the transactor failed:\n{out[-8000:]}"
    assert " passed" in out, out[-8000:]
