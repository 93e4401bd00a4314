"""Queries against as_of / since / history / filter views."""

from fastdatomic.query.engine import q
from test_query_data import fresh, PEOPLE


def build():
    conn = fresh()
    r1 = conn.transact(PEOPLE)
    ann = r1.tempids["ann"]
    r2 = conn.transact([[":db/add", ann, ":person/age", 31]])
    r3 = conn.transact([[":db/retract", ann, ":person/email", "ann@x.org"]])
    return conn, ann, r1, r2, r3


AGE = '[:find ?a . :in $ ?e :where [?e :person/age ?a]]'


def test_as_of_and_since():
    conn, ann, r1, r2, r3 = build()
    db = conn.db()
    assert q(AGE, db, ann) == 31
    assert q(AGE, db.as_of(r1.t), ann) == 30
    assert q('[:find ?m . :in $ ?e :where [?e :person/email ?m]]', db.as_of(r2.t), ann) == "ann@x.org"
    assert q('[:find ?m . :in $ ?e :where [?e :person/email ?m]]', db, ann) is None
    assert q('[:find [?a ...] :where [_ :person/age ?a]]', db.since(r1.t)) == [31]


def test_history_added_and_tx():
    conn, ann, r1, r2, r3 = build()
    h = conn.db().history()
    r = q('[:find ?a ?tx ?op :in $ ?e :where [?e :person/age ?a ?tx ?op]]', h, ann)
    tx1, tx2 = r1.tempids["datomic.tx"], r2.tempids["datomic.tx"]
    assert r == {(30, tx1, True), (30, tx2, False), (31, tx2, True)}
    r = q('[:find ?m :in $ ?e :where [?e :person/email ?m _ false]]', h, ann)
    assert r == {("ann@x.org",)}


def test_filter_view():
    conn, ann, *_ = build()
    db = conn.db()
    name = db.attribute(":person/name").id
    f = db.filter(lambda _db, d: d.a != name or d.v != "Bob")
    assert sorted(q('[:find [?n ...] :where [_ :person/name ?n]]', f)) == ["Ann", "Cid", "Dee", "Eve"]


def test_two_views_as_sources():
    conn, ann, r1, r2, r3 = build()
    db = conn.db()
    r = q('[:find ?old ?new :in $old $new ?e :where [$old ?e :person/age ?old] [$new ?e :person/age ?new]]',
          db.as_of(r1.t), db, ann)
    assert r == {(30, 31)}
