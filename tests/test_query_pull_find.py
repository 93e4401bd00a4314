"""(pull ?e pattern) in :find."""

from fastdatomic.query.engine import q
from test_query_data import people, K


def test_pull_literal():
    _, db, _, _ = people()
    r = q('[:find (pull ?e [:person/name :person/age]) . :where [?e :person/age 40]]', db)
    assert r == {K("person/name"): "Cid", K("person/age"): 40}


def test_pull_coll_and_rel():
    _, db, ids, _ = people()
    r = q('[:find [(pull ?e [:person/name]) ...] :where [?e :person/age 25]]', db)
    assert sorted(x[K("person/name")] for x in r) == ["Bob", "Dee"]
    r = q('[:find ?a (pull ?e [:person/name]) :where [?e :person/age ?a] [(> ?a 36)]]', db)
    assert r == [(40, {K("person/name"): "Cid"})]


def test_pull_pattern_input():
    _, db, _, _ = people()
    r = q('[:find (pull ?e pat) . :in $ pat :where [?e :person/age 40]]', db, "[:person/email :person/name]")
    assert r == {K("person/name"): "Cid"}
