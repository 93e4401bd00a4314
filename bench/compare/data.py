"""Seeded data and the workload spec shared by every system in ``bench/compare``.

``write_all(out_dir, quick)`` writes, under ``out_dir`` (``bench/compare/results``):

- ``people.json`` / ``people.edn``  dataset (a): DataScript's published benchmark shape
  (``bench/datascript/bench/bench.cljc`` in tonsky/datascript): people with ``:name``
  from an 8-name pool, ``:last-name`` from a 6-name pool, ``:sex`` ``:male``/``:female``,
  ``:age`` 0..99, ``:salary`` 0..99999.  (The published bench also adds ``:full-name``
  and a cardinality-many ``:alias``; no query reads them, so they are left out.)
- ``users.json`` / ``users.edn``    dataset (b): entities x 3 attributes
  (``:user/name``, ``:user/age`` 0..99, ``:user/email`` unique).
- ``workload.json``                 schema, queries (EDN text), inputs, count variants,
  pull pattern and pull entity numbers, timing policy.

Entities are numbered 1..N inside each dataset.  DataScript and Datalevin use those
numbers as ``:db/id``; fastdatomic uses them as string tempids and maps them back.
JSON rows are ``[id, {attr: value}]`` with attribute names without the leading colon;
keyword values are written as ``{"kw": "male"}`` in JSON and as ``:male`` in EDN.
"""

from __future__ import annotations

import json
import os
import random

SEED = 20261122

NAMES = ["Ivan", "Petr", "Sergei", "Oleg", "Yuri", "Dmitry", "Fedor", "Denis"]
LAST_NAMES = ["Ivanov", "Petrov", "Sidorov", "Kovalev", "Kuznetsov", "Voronoi"]
FIRST = ["ann", "bob", "cid", "dan", "eve", "fay", "gus", "hal", "ida", "jon",
         "kim", "lou", "max", "ned", "oli", "pam"]

# attr -> (valueType, indexed). One schema for all systems: fastdatomic declares
# :db/index, DataScript gets :db/index (so its AVET has these attrs), Datalevin indexes
# every attribute anyway and gets the value types.
SCHEMA = {
    "people": {
        "name": ("string", True),
        "last-name": ("string", False),
        "sex": ("keyword", False),
        "age": ("long", True),
        "salary": ("long", True),
    },
    "users": {
        "user/name": ("string", True),
        "user/age": ("long", True),
        "user/email": ("string", True),
    },
}

# Queries. "q" is the EDN text every system runs; "count" is Datalevin's count variant
# (results stay in the JVM, so conversion to Python is excluded). Keyword literals in
# queries only appear as :male (see DataScript note in the README).
QUERIES = [
    # (a) DataScript's published benchmark queries, verbatim.
    {"name": "q1", "dataset": "people",
     "q": '[:find ?e :where [?e :name "Ivan"]]',
     "count": '[:find (count ?e) :where [?e :name "Ivan"]]'},
    {"name": "q2", "dataset": "people",
     "q": '[:find ?e ?a :where [?e :name "Ivan"] [?e :age ?a]]',
     "count": '[:find (count ?e) :where [?e :name "Ivan"] [?e :age ?a]]'},
    {"name": "q2-switch", "dataset": "people",
     "q": '[:find ?e ?a :where [?e :age ?a] [?e :name "Ivan"]]',
     "count": '[:find (count ?e) :where [?e :age ?a] [?e :name "Ivan"]]'},
    {"name": "q3", "dataset": "people",
     "q": '[:find ?e ?a :where [?e :name "Ivan"] [?e :age ?a] [?e :sex :male]]',
     "count": '[:find (count ?e) :where [?e :name "Ivan"] [?e :age ?a] [?e :sex :male]]'},
    {"name": "q4", "dataset": "people",
     "q": '[:find ?e ?l ?a :where [?e :name "Ivan"] [?e :last-name ?l] [?e :age ?a] [?e :sex :male]]',
     "count": '[:find (count ?e) :where [?e :name "Ivan"] [?e :last-name ?l] [?e :age ?a] [?e :sex :male]]'},
    {"name": "qpred1", "dataset": "people",
     "q": '[:find ?e ?s :where [?e :salary ?s] [(> ?s 50000)]]',
     "count": '[:find (count ?e) :where [?e :salary ?s] [(> ?s 50000)]]'},
    {"name": "qpred2", "dataset": "people",
     "q": '[:find ?e ?s :in $ ?min_s :where [?e :salary ?s] [(> ?s ?min_s)]]',
     "count": '[:find (count ?e) :in $ ?min_s :where [?e :salary ?s] [(> ?s ?min_s)]]',
     "inputs": [50000]},
    # (b) entities x 3 attributes.
    {"name": "b-lookup", "dataset": "users",
     "q": '[:find ?e :where [?e :user/age 42]]',
     "count": '[:find (count ?e) :where [?e :user/age 42]]'},
    {"name": "b-join2", "dataset": "users",
     "q": '[:find ?e ?n :where [?e :user/age 42] [?e :user/name ?n]]',
     "count": '[:find (count ?e) :where [?e :user/age 42] [?e :user/name ?n]]'},
    {"name": "b-join3-pred", "dataset": "users",
     "q": '[:find ?e ?n ?m :where [?e :user/age ?a] [(< ?a 10)] [?e :user/name ?n] [?e :user/email ?m]]',
     "count": '[:find (count ?e) :where [?e :user/age ?a] [(< ?a 10)] [?e :user/name ?n] [?e :user/email ?m]]'},
    {"name": "b-pull1000", "dataset": "users", "kind": "pull",
     "pattern": "[:user/name :user/age :user/email]"},
]

SIZES = {"full": {"people": 20000, "users": 100000, "pull": 1000},
         "quick": {"people": 20000, "users": 20000, "pull": 1000}}
TIMING = {"full": {"warmup_s": 1.0, "warmup_max": 200, "reps": 30, "max_s": 10.0},
          "quick": {"warmup_s": 0.2, "warmup_max": 20, "reps": 7, "max_s": 2.0}}


def gen_people(n, rng):
    out = []
    for i in range(1, n + 1):
        out.append((i, {"name": rng.choice(NAMES), "last-name": rng.choice(LAST_NAMES),
                        "sex": ("kw", rng.choice(["male", "female"])),
                        "age": rng.randrange(100), "salary": rng.randrange(100000)}))
    return out


def gen_users(n, rng):
    out = []
    for i in range(1, n + 1):
        first = rng.choice(FIRST)
        out.append((i, {"user/name": f"{first}-{rng.randrange(1000)}",
                        "user/age": rng.randrange(100),
                        "user/email": f"{first}.{i}@example.com"}))
    return out


def _json_val(v):
    return {"kw": v[1]} if isinstance(v, tuple) else v


def _edn_val(v):
    if isinstance(v, tuple):
        return ":" + v[1]
    if isinstance(v, str):
        return json.dumps(v)  # no escapes beyond what EDN shares with JSON in this data
    return str(v)


def write_all(out_dir, quick=False):
    mode = "quick" if quick else "full"
    sizes = SIZES[mode]
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(SEED)
    data = {"people": gen_people(sizes["people"], rng), "users": gen_users(sizes["users"], rng)}
    for ds, rows in data.items():
        with open(os.path.join(out_dir, f"{ds}.json"), "w") as f:
            json.dump([[i, {k: _json_val(v) for k, v in m.items()}] for i, m in rows], f)
        with open(os.path.join(out_dir, f"{ds}.edn"), "w") as f:  # one entity map a line
            for i, m in rows:
                f.write("{:db/id %d %s}\n" % (i, " ".join(f":{k} {_edn_val(v)}" for k, v in m.items())))
    n_users = sizes["users"]
    step = max(1, n_users // sizes["pull"])
    pull_ids = list(range(1, n_users + 1, step))[: sizes["pull"]]
    queries = []
    for q in QUERIES:
        q = dict(q)
        q.setdefault("kind", "q")
        q.setdefault("inputs", [])
        if q["kind"] == "pull":
            q["ids"] = pull_ids
        queries.append(q)
    spec = {"mode": mode, "seed": SEED, "sizes": {k: len(v) for k, v in data.items()},
            "schema": {ds: {a: {"type": t, "index": ix} for a, (t, ix) in attrs.items()}
                       for ds, attrs in SCHEMA.items()},
            "queries": queries, "timing": TIMING[mode]}
    with open(os.path.join(out_dir, "workload.json"), "w") as f:
        json.dump(spec, f, indent=1)
    return spec


if __name__ == "__main__":
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    s = write_all(os.path.join(here, "results"), quick="--quick" in sys.argv)
    print(json.dumps(s["sizes"]))
