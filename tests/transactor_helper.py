"""Real transactor processes for tests: write a properties file, start, wait for the banner.

Every transactor here listens on loopback with an OS-chosen port (``port=0``); peers find
it through the lease in storage, exactly as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_config(dir_, data_dir, name="transactor", **props):
    """A properties file for a loopback transactor on ``data_dir``; ``props`` override keys
    (underscores become dashes)."""
    base = {
        "protocol": "dev", "host": "127.0.0.1", "port": "0", "data-dir": data_dir,
        "log-dir": os.path.join(dir_, f"{name}-log"), "heartbeat-interval-msec": "1000",
        "encrypt-channel": "false", "pid-file": os.path.join(dir_, f"{name}.pid"),
        "lmdb-map-size": "64m",
    }
    for k, v in props.items():
        base[k.replace("_", "-")] = str(v)
    path = os.path.join(dir_, f"{name}.properties")
    with open(path, "w") as f:
        for k, v in base.items():
            if v is not None and v != "None":
                f.write(f"{k}={v}\n")
    return path


_running: list = []


def stop_all():
    """kill -9 every transactor a test started and left running (test teardown)."""
    while _running:
        p = _running.pop()
        if p.proc.poll() is None:
            p.kill()


class TransactorProcess:
    """A ``fastdatomic-transactor`` subprocess; ``output`` collects its stdout+stderr lines."""

    def __init__(self, config_path, env=None):
        _running.append(self)
        self.config_path = config_path
        self.output: list[str] = []
        self.started = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastdatomic.transactor.server", config_path],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            env={**os.environ, **(env or {})}, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))
            if line.startswith("System started"):
                self.started.set()

    def wait_started(self, timeout=30.0):
        """Block until the banner (the transactor is active and serving)."""
        if not self.started.wait(timeout):
            self.kill()
            raise AssertionError(f"transactor did not start in {timeout} s:\n" + "\n".join(self.output))
        return self

    @property
    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        try:
            os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self):
        """kill -9."""
        self.signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout=20.0):
        """SIGTERM and wait for a graceful exit; returns the exit status."""
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def wait(self, timeout):
        return self.proc.wait(timeout)


def start_transactor(tmp_path, data_dir=None, name="transactor", wait=True, **props):
    """Start a transactor on ``data_dir`` (default ``tmp_path/data``); returns the process."""
    data_dir = data_dir or os.path.join(str(tmp_path), "data")
    proc = TransactorProcess(write_config(str(tmp_path), data_dir, name, **props))
    if wait:
        proc.wait_started()
    return proc


def wait_until(pred, timeout=10.0, interval=0.01):
    """Poll ``pred`` until true (returns its value) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
