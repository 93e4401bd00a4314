"""The latency-after-HA tool (tools/latency_after_ha.py), one short kill round in CI.

Real processes: two transactors on LMDB storage, two load peers, kill -9 of the active.
The figures themselves are recorded by the full runs in bench/README.md; here the tool
must produce a complete result: every field, a recovery time for every peer, no
acknowledged transaction lost, and the PNG timeline.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "latency_after_ha.py")

pytest.importorskip("matplotlib")


def test_one_kill_round_is_measured_and_loses_nothing(tmp_path):
    out = tmp_path / "ha.json"
    proc = subprocess.run(
        [sys.executable, TOOL, "--peers", "2", "--rate", "100", "--heartbeat-msec", "1000",
         "--fault", "kill", "--warmup", "2", "--after", "3", "--rounds", "1",
         "--data-dir", str(tmp_path / "data"), "--out", str(out), "--max-seconds", "90"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "integrity" in proc.stdout and "OK" in proc.stdout
    result = json.loads(out.read_text())
    assert (tmp_path / "ha.png").stat().st_size > 10_000

    assert result["config"]["fault"] == "kill" and result["config"]["peers"] == 2
    for key in ("rounds", "aggregate", "targets", "integrity", "definitions", "command"):
        assert key in result, key
    (rnd,) = result["rounds"]
    assert rnd["old_active"]["exit_status"] == -9
    assert rnd["new_epoch"] == rnd["old_epoch"] + 1
    assert 0 <= rnd["detection_s"] < 2 * 1.0 + 1.0
    assert rnd["times_s"]["banner"] >= rnd["times_s"]["takeover"] >= 0
    for key in ("before", "after", "straddling"):
        for stat in ("n", "p50_ms", "p99_ms", "max_ms"):
            assert stat in rnd[key], (key, stat)
    assert rnd["before"]["n"] > 0 and rnd["after"]["n"] > 0
    assert rnd["before"]["throughput_tps"] > 0 and rnd["after"]["throughput_tps"] > 0
    # Every peer got an acknowledgement through the new active, after the fault.
    assert set(rnd["peers"]) == {"0", "1"}
    for peer in rnd["peers"].values():
        assert peer["recovery_s"] is not None and 0 < peer["recovery_s"] < 30
    assert rnd["recovered_peers"] == 2

    agg = result["aggregate"]
    assert agg["recovered"] == "2/2" and agg["recovery_s"]["p99"] is not None
    assert agg["counts"]["acknowledged"] > 0
    assert set(result["targets"]) == {"recovery_p99_s", "after_p99_ratio"}
    # Nothing acknowledged was lost or applied twice.
    integ = result["integrity"]
    assert integ["ok"], integ
    assert integ["acknowledged"] == agg["counts"]["acknowledged"]
    assert integ["acknowledged_lost"] == 0 and integ["acknowledged_duplicated"] == 0
    assert integ["acknowledged_wrong_t"] == 0 and integ["failed_present"] == 0
