"""Benchmark fastdatomic.edn: throughput of loads/dumps on typical transaction data and queries.

    PYTHONPATH=src python bench/bench_edn.py            # pyperf: several worker processes
    PYTHONPATH=src python bench/bench_edn.py --fast     # quicker, noisier
    PYTHONPATH=src python bench/bench_edn.py --quick    # no pyperf: best of 7 in-process, a smoke check

Prints MB/s (10^6 characters of EDN text per second) for each case after pyperf's summary.
The data is deterministic (seeded), about 1 MB of transaction data per case.
"""

import random
import sys
import time
from datetime import datetime, timedelta, timezone

from fastdatomic import edn

FIRST = ["Ann", "Bob", "Carl", "Dora", "Emil", "Fay", "Gus", "Hana", "Ivo", "Jill", "Kurt", "Lena"]
LAST = ["Smith", "Okafor", "Nguyen", "Müller", "García", "Rossi", "Kowalski", "Tanaka", "Dubois"]
CITIES = ["Lisbon", "Oslo", "Lagos", "Osaka", "Quito", "Perth", "Tunis", "Hanoi"]

SCHEMA = """[
 {:db/ident :person/email :db/valueType :db.type/string :db/cardinality :db.cardinality/one
  :db/unique :db.unique/identity :db/doc "Primary e-mail address"}
 {:db/ident :person/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 {:db/ident :person/age :db/valueType :db.type/long :db/cardinality :db.cardinality/one :db/index true}
 {:db/ident :person/born :db/valueType :db.type/instant :db/cardinality :db.cardinality/one}
 {:db/ident :person/friends :db/valueType :db.type/ref :db/cardinality :db.cardinality/many}
 {:db/ident :person/address :db/valueType :db.type/ref :db/cardinality :db.cardinality/one
  :db/isComponent true}
 {:db/ident :address/city :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 {:db/ident :address/zip :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 {:db/ident :person/score :db/valueType :db.type/double :db/cardinality :db.cardinality/one}
 {:db/ident :person/status :db/valueType :db.type/ref :db/cardinality :db.cardinality/one}
 {:db/ident :status/active} {:db/ident :status/inactive}
]"""


def tx_data(n_entities, seed=42, with_instants=True):
    """A transaction the way applications write them: entity maps, lookup refs, list forms."""
    r = random.Random(seed)
    out = ["["]
    base = datetime(1950, 1, 1, tzinfo=timezone.utc)
    for i in range(n_entities):
        first, last = r.choice(FIRST), r.choice(LAST)
        email = f"{first.lower()}.{i}@example.com"
        friends = " ".join(f'[:person/email "{r.choice(FIRST).lower()}.{r.randrange(n_entities)}@example.com"]'
                           for _ in range(r.randrange(3)))
        born = ""
        if with_instants:
            d = base + timedelta(days=r.randrange(25000))
            born = f' :person/born #inst "{d:%Y-%m-%d}T00:00:00.000-00:00"'
        out.append(
            f'{{:db/id "p{i}" :person/email "{email}" :person/name "{first} {last}" :person/age {r.randrange(1, 99)}'
            f'{born} :person/score {r.random() * 100:.3f} :person/status :status/{r.choice(["active", "inactive"])}'
            f' :person/address {{:address/city "{r.choice(CITIES)}" :address/zip "{r.randrange(10000, 99999)}"}}'
            f' :person/friends [{friends}]}}\n')
        if i % 10 == 0:
            out.append(f'[:db/add "p{i}" :person/age {r.randrange(1, 99)}]\n')
            out.append(f'[:db/retract [:person/email "{email}"] :person/status :status/inactive]\n')
    out.append("]")
    return "".join(out)


QUERIES = [
    '[:find ?e :where [?e :person/name "Ann"]]',
    "[:find ?name ?age :in $ ?min :where [?e :person/name ?name] [?e :person/age ?age] [(> ?age ?min)]]",
    "[:find (pull ?e [* {:person/friends [:person/name]}]) :in $ % :where (friend-of ?e ?f) "
    "[?f :person/email \"ann.1@example.com\"]]",
    "[:find ?city (count ?e) :keys city n :where [?e :person/address ?a] [?a :address/city ?city]]",
    "[[(friend-of ?a ?b) [?a :person/friends ?b]] [(friend-of ?a ?b) [?b :person/friends ?a]]]",
]


def escaped_data(n, seed=7):
    """Strings with escapes and comments: the slower, regex-split route of the fast path."""
    r = random.Random(seed)
    out = ["[ ; generated\n"]
    for i in range(n):
        out.append(f'{{:note/id {i} :note/text "line one\\nline \\"two\\"\\t{r.random():.4f}" '
                   f':note/tag :tag/t{i % 7}}} ; note {i}\n')
    out.append("]")
    return "".join(out)


def cases():
    tx = tx_data(4000)
    tx_plain = tx_data(4000, with_instants=False)
    queries = "\n".join(QUERIES)
    value = edn.loads(tx)
    return {
        "loads tx (with #inst)": (edn.loads, tx, len(tx)),
        "loads tx (no tags)": (edn.loads, tx_plain, len(tx_plain)),
        "loads schema": (edn.loads, SCHEMA, len(SCHEMA)),
        "loads queries (5 small texts)": (lambda qs: [edn.loads(q) for q in qs], QUERIES, len(queries)),
        "loads escapes+comments": (edn.loads, escaped_data(8000), len(escaped_data(8000))),
        "careful reader tx": (lambda t: edn._Reader(t, edn._BUILTIN_TAGS, True).run(), tx, len(tx)),
        "dumps tx": (edn.dumps, value, len(edn.dumps(value))),
    }


def quick():
    for name, (fn, arg, size) in cases().items():
        best = float("inf")
        for _ in range(7):
            t = time.perf_counter()
            fn(arg)
            best = min(best, time.perf_counter() - t)
        print(f"{name:32s} {size / best / 1e6:7.1f} MB/s   ({size / 1e6:.2f} MB in {best * 1e3:.1f} ms)")


def main():
    if "--quick" in sys.argv:
        quick()
        return
    import pyperf

    runner = pyperf.Runner()
    results = []
    for name, (fn, arg, size) in cases().items():
        results.append((name, size, runner.bench_func(name, fn, arg)))
    if not runner.args.worker:
        print()
        for name, size, bench in results:
            mean = bench.mean()
            best = min(bench.get_values())
            print(f"{name:32s} {size / mean / 1e6:7.1f} MB/s (mean) {size / best / 1e6:7.1f} MB/s (best)"
                  f"   {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
