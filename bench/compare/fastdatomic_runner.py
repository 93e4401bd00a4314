"""fastdatomic side of bench/compare: ``python fastdatomic_runner.py RESULTS_DIR OUT_JSON``.

Run by ``run.py`` with the project's Python and ``src/`` on ``PYTHONPATH``. Loads
``people.json`` / ``users.json`` into ``fastdatomic:mem://`` databases through
``conn.transact`` (batches of 1000 maps, schema from ``workload.json``), then times each
query in-process with ``fastdatomic.q(query, db, *inputs)`` (warm-up, N reps, median) and
the pull workload with ``db.pull_many(pattern, eids)``; each query's ``(count ?e)``
variant is timed too (``count_results``), as the Datalevin runner does. When ``fastdatomic.q`` does not
exist yet, the queries are reported as "q not available yet" and the pull still runs.
"""

from __future__ import annotations

import json
import os
import sys
import time

from timing import bench  # bench/compare/timing.py: one timing loop for every runner

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "..", "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)


def log(*a):
    print("[fastdatomic]", *a, file=sys.stderr, flush=True)


def find_q(fd):
    """``fastdatomic.q`` if it exists, else the engine module's ``q``, else None."""
    if callable(getattr(fd, "q", None)):
        return fd.q
    try:
        from fastdatomic.query import engine  # being written (issue #4)
        return getattr(engine, "q", None)
    except Exception:  # noqa: BLE001
        return None


def main():
    results_dir, out_path = sys.argv[1], sys.argv[2]

    def finish(payload):
        with open(out_path, "w") as f:
            json.dump(payload, f, indent=1)

    try:
        import fastdatomic as fd
        from fastdatomic import Keyword
    except Exception as e:  # noqa: BLE001
        return finish({"system": "fastdatomic", "error": f"fastdatomic not importable: {e!r}"})
    with open(os.path.join(results_dir, "workload.json")) as f:
        spec = json.load(f)
    T = spec["timing"]
    q = find_q(fd)
    dbs, ids = {}, {}
    t0 = time.perf_counter()
    for ds, attrs in spec["schema"].items():
        uri = f"fastdatomic:mem://compare-{ds}-{os.getpid()}"
        fd.create_database(uri)
        conn = fd.connect(uri)
        conn.transact("[" + " ".join(
            f"{{:db/ident :{a} :db/valueType :db.type/{s['type']} "
            f":db/cardinality :db.cardinality/one{' :db/index true' if s['index'] else ''}}}"
            for a, s in attrs.items()) + "]")
        with open(os.path.join(results_dir, f"{ds}.json")) as f:
            rows = json.load(f)
        kws = {}
        m = {}
        for i in range(0, len(rows), 1000):
            batch = []
            for e, ent in rows[i:i + 1000]:
                d = {":db/id": f"e{e}"}
                for a, v in ent.items():
                    if isinstance(v, dict):
                        v = kws.get(v["kw"]) or kws.setdefault(v["kw"], Keyword(v["kw"]))
                    d[":" + a] = v
                batch.append(d)
            r = conn.transact(batch)
            for e, _ in rows[i:i + 1000]:
                m[e] = r.tempids[f"e{e}"]
        dbs[ds], ids[ds] = conn.db(), m
    load_ms = (time.perf_counter() - t0) * 1000
    log(f"loaded {spec['sizes']} in {load_ms:.0f} ms; q {'found' if q else 'NOT available yet'}")
    results, counts = {}, {}
    for wq in spec["queries"]:
        db = dbs[wq["dataset"]]
        try:
            if wq["kind"] == "pull":
                eids = [ids[wq["dataset"]][i] for i in wq["ids"]]
                r, out = bench(lambda: db.pull_many(wq["pattern"], eids), T)
            elif q is None:
                results[wq["name"]] = {"error": "q not available yet"}
                continue
            else:
                r, out = bench(lambda: q(wq["q"], db, *wq["inputs"]), T)
                # the (count ?e) variant too: the engine without materialising rows,
                # the same measure as Datalevin's count column
                c, cout = bench(lambda: q(wq["count"], db, *wq["inputs"]), T)
                c["n_results"] = next(iter(cout))[0] if cout else 0
                counts[wq["name"]] = c
            r["n_results"] = len(out)
            results[wq["name"]] = r
            log(f"{wq['name']}: {r['median_ms']:.3f} ms ({r['n_results']} rows)"
                + (f", count {counts[wq['name']]['median_ms']:.3f} ms" if wq["name"] in counts else ""))
        except Exception as e:  # noqa: BLE001
            results[wq["name"]] = {"error": repr(e)[:500]}
            log(f"{wq['name']}: ERROR {e!r}"[:500])
    finish({"system": "fastdatomic", "version": getattr(fd, "__version__", "tree"),
            "runtime": f"CPython {sys.version.split()[0]}", "load_ms": load_ms,
            "q_available": q is not None,
            "q_source": f"{q.__module__}.{q.__name__}" if q else None, "results": results,
            "count_results": counts})


if __name__ == "__main__":
    main()
