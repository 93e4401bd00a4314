"""Shared query test data: a small people / friends / orders database (imported by test_query_*)."""


from txfns_helper import fresh_conn
from fastdatomic.types import Keyword

K = Keyword

SCHEMA = """[
 {:db/ident :person/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one :db/unique :db.unique/identity}
 {:db/ident :person/age :db/valueType :db.type/long :db/cardinality :db.cardinality/one :db/index true}
 {:db/ident :person/email :db/valueType :db.type/string :db/cardinality :db.cardinality/one :db/unique :db.unique/value}
 {:db/ident :person/friend :db/valueType :db.type/ref :db/cardinality :db.cardinality/many}
 {:db/ident :person/status :db/valueType :db.type/ref :db/cardinality :db.cardinality/one}
 {:db/ident :person/tag :db/valueType :db.type/keyword :db/cardinality :db.cardinality/many}
 {:db/ident :person/salary :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
 {:db/ident :person/parent :db/valueType :db.type/ref :db/cardinality :db.cardinality/many}
 {:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one :db/unique :db.unique/identity}
 {:db/ident :order/customer :db/valueType :db.type/ref :db/cardinality :db.cardinality/one}
 {:db/ident :order/total :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
 {:db/ident :order/item :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
 {:db/ident :status/active}
 {:db/ident :status/inactive}
]"""

PEOPLE = """[
 {:db/id "ann" :person/name "Ann" :person/age 30 :person/email "ann@x.org" :person/status :status/active
  :person/tag [:admin :dev] :person/salary 70000}
 {:db/id "bob" :person/name "Bob" :person/age 25 :person/email "bob@x.org" :person/status :status/active
  :person/tag [:dev] :person/salary 50000}
 {:db/id "cid" :person/name "Cid" :person/age 40 :person/status :status/inactive :person/salary 40000}
 {:db/id "dee" :person/name "Dee" :person/age 25 :person/email "dee@x.org" :person/status :status/active}
 {:db/id "eve" :person/name "Eve" :person/age 35}
 [:db/add "ann" :person/friend "bob"]
 [:db/add "bob" :person/friend "cid"]
 [:db/add "cid" :person/friend "ann"]
 [:db/add "dee" :person/friend "eve"]
 [:db/add "bob" :person/parent "ann"]
 [:db/add "cid" :person/parent "bob"]
 [:db/add "dee" :person/parent "cid"]
 {:order/id 1 :order/customer "ann" :order/total 100 :order/item "book"}
 {:order/id 2 :order/customer "ann" :order/total 50 :order/item "pen"}
 {:order/id 3 :order/customer "bob" :order/total 50 :order/item "book"}
 {:order/id 4 :order/customer "cid" :order/total 200 :order/item "lamp"}
]"""


def fresh():
    return fresh_conn(SCHEMA)


_CACHE = {}


def people():
    """(conn, db, ids) with ids mapping first names to entity ids (built once per session)."""
    if "people" not in _CACHE:
        conn = fresh()
        r = conn.transact(PEOPLE)
        ids = {k.capitalize(): v for k, v in r.tempids.items() if k in ("ann", "bob", "cid", "dee", "eve")}
        _CACHE["people"] = (conn, conn.db(), ids, r)
    return _CACHE["people"]


def test_dataset_loads():
    _, db, ids, _ = people()
    assert set(ids) == {"Ann", "Bob", "Cid", "Dee", "Eve"}
    assert db.entid([K("person/name"), "Ann"]) == ids["Ann"]
