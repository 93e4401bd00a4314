"""Audit of Datomic's query grammar (issue #4) against the engine: small queries with
hand-written expected results from Datomic's documentation.

The first part pins down corners no other test_query_* file covers. The second part
(marked ``xfail(strict=True)``) records where the engine differs from Datomic today; each
reason says what happens now. When a fix lands the test passes, strict xfail turns that
into a failure, and the marker must go.
"""

import pytest

from fastdatomic.errors import FastDatomicError, QueryParseError
from fastdatomic.query.engine import QueryTimeoutError, q, query, register_query_fn
from test_query_data import K, people

AGE = "[?e :person/name ?n] [?e :person/age ?a]"


# --- find specs, :keys, :with ---------------------------------------------------------------

def test_tuple_find_of_aggregates_and_collection_of_aggregate():
    _, db, _, _ = people()
    assert q(f"[:find [(min ?a) (max ?a)] :where {AGE}]", db) == (25, 40)
    assert q(f"[:find [(count ?e) ...] :where {AGE}]", db) == [5]


def test_keys_on_tuple_find_is_one_map():
    _, db, _, _ = people()
    assert q(f'[:find [?n ?a] :keys n a :where {AGE} [(= ?n "Ann")]]', db) == {K("n"): "Ann", K("a"): 30}


def test_with_without_aggregate_is_a_bag():
    _, db, _, _ = people()
    assert sorted(q("[:find ?a :with ?e :where [?e :person/age ?a]]", db)) == [(25,), (25,), (30,), (35,), (40,)]
    got = q("[:find ?a :keys a :with ?e :where [?e :person/age ?a]]", db)
    assert sorted(m[K("a")] for m in got) == [25, 25, 30, 35, 40]


def test_keys_need_relation_or_tuple_find():
    _, db, _, _ = people()
    with pytest.raises(QueryParseError, match=":strs needs a relation or tuple find spec"):
        q("[:find [?a ...] :strs a :where [?e :person/age ?a]]", db)


# --- sources: a plain collection of tuples, rule/not/or scoped to a source ------------------

def test_not_and_or_scoped_to_a_collection_source():
    _, db, _, _ = people()
    marks = [("Ann", "x"), ("Cid", "y"), ("Bob", "z")]
    assert q('[:find ?n :in $ $b :where [_ :person/name ?n] ($b not [?n "z"]) ($b or [?n "x"] [?n "y"])]',
             db, marks) == {("Ann",), ("Cid",)}


def test_collection_source_of_four_tuples_and_short_rows():
    assert q("[:find ?e ?tx :where [?e _ _ ?tx]]", [(1, 2, 3, 4), (5, 6, 7)]) == {(1, 4)}


def test_functions_take_a_named_source():
    _, db, ids, _ = people()
    assert q('[:find ?m . :in $b ?e :where [(get-else $b ?e :person/email "none") ?m]]', db, ids["Eve"]) == "none"
    assert q("[:find ?e . :in $b ?e :where [(missing? $b ?e :person/email)]]", db, ids["Eve"]) == ids["Eve"]
    assert q("[:find (pull $b ?e [:person/name]) . :in $b ?e]", db, ids["Eve"]) == {K("person/name"): "Eve"}


# --- functions -----------------------------------------------------------------------------

def test_get_some_gives_attribute_id_and_value():
    _, db, ids, _ = people()
    age = db.attribute(":person/age").id
    assert q('[:find ?a ?v :in $ ?e :where [(get-some $ ?e :person/email :person/age) [?a ?v]]]',
             db, ids["Eve"]) == {(age, 35)}


def test_variadic_comparison_and_arithmetic():
    _, db, _, _ = people()
    assert q(f"[:find ?n :where {AGE} [(< 24 ?a 30)]]", db) == {("Bob",), ("Dee",)}
    assert q("[:find ?y . :where [(- 7 2 1) ?y]]") == 4
    assert q('[:find ?y . :where [(str "a" 1 nil :k/w) ?y]]') == "a1:k/w"


def test_tx_ids_then_tx_data_by_tx_id():
    # Datomic's example: transactions in a t range, then their datoms.
    conn, db, _, r = people()
    log = conn.log()
    tx = r.tempids["datomic.tx"]
    assert q("[:find [?tx ...] :in ?log ?t1 ?t2 :where [(tx-ids ?log ?t1 ?t2) [?tx ...]]]", log, r.t, r.t + 1) == [tx]
    got = q("[:find ?n :in $ ?log ?t1 ?t2 :where [(tx-ids ?log ?t1 ?t2) [?tx ...]] "
            "[(tx-data ?log ?tx) [[?e ?a ?n]]] [?a :db/ident :person/name]]", db, log, r.t, r.t + 1)
    assert got == {("Ann",), ("Bob",), ("Cid",), ("Dee",), ("Eve",)}


# --- not-join / or-join with input variables ------------------------------------------------

def test_not_join_on_an_input_variable():
    _, db, _, _ = people()
    got = q("[:find ?n :in $ ?t :where [?e :person/name ?n] "
            "(not-join [?e ?t] [?o :order/customer ?e] [?o :order/total ?t])]", db, 50)
    assert got == {("Cid",), ("Dee",), ("Eve",)}


def test_or_with_not_branch():
    _, db, _, _ = people()
    got = q('[:find ?n :where [?e :person/name ?n] (or (not [?e :person/age 25]) [?e :person/email "dee@x.org"])]', db)
    assert got == {("Ann",), ("Cid",), ("Dee",), ("Eve",)}


# --- aggregates ------------------------------------------------------------------------------

@pytest.mark.parametrize("agg,expected", [
    ("(count ?a)", 5), ("(count-distinct ?a)", 4), ("(sum ?a)", 155), ("(avg ?a)", 31.0),
    ("(median ?a)", 30), ("(variance ?a)", 34.0), ("(max 2 ?a)", [40, 35]),
])
def test_aggregates_over_a_bag_of_ages(agg, expected):
    # ages with :with ?e: 30 25 40 25 35
    _, db, _, _ = people()
    assert q(f"[:find {agg} . :with ?e :where [?e :person/age ?a]]", db) == expected


def test_grouped_collection_aggregates():
    _, db, _, _ = people()
    active = db.entid(":status/active")
    got = q("[:find ?s (distinct ?a) (min 1 ?a) :where [?e :person/status ?s] [?e :person/age ?a]]", db)
    assert sorted(got) == sorted([(active, {25, 30}, [25]), (db.entid(":status/inactive"), {40}, [40])])


def test_sample_and_rand_bounds():
    _, db, _, _ = people()
    assert q("[:find (sample 0 ?a) . :where [_ :person/age ?a]]", db) == []
    assert sorted(q("[:find (sample 9 ?a) . :where [_ :person/age ?a]]", db)) == [25, 30, 35, 40]
    assert len(q("[:find (rand 7 ?a) . :where [_ :person/age ?a]]", db)) == 7   # with replacement


def test_pull_grouped_with_aggregate():
    _, db, _, _ = people()
    got = q("[:find (pull ?c [:person/name]) (sum ?t) :with ?o :where [?o :order/customer ?c] [?o :order/total ?t]]", db)
    assert sorted((p[K("person/name")], s) for p, s in got) == [("Ann", 150), ("Bob", 50), ("Cid", 200)]


# --- database views and map-form extensions -----------------------------------------------------

def test_pull_on_history_db_is_refused():
    _, db, ids, _ = people()
    with pytest.raises(FastDatomicError, match="history"):
        q("[:find (pull ?e [:person/name]) . :in $ ?e]", db.history(), ids["Ann"])


def test_filtered_db_hides_datoms_from_functions_and_pull():
    _, db, ids, _ = people()
    f = db.filter(lambda _db, d: d.v != "Bob")
    assert q('[:find ?x . :in $ ?e :where [(get-else $ ?e :person/name "none") ?x]]', f, ids["Bob"]) == "none"
    assert q("[:find ?e . :in $ ?e :where [(missing? $ ?e :person/name)]]", f, ids["Bob"]) == ids["Bob"]
    assert q("[:find (pull ?e [:person/name]) . :in $ ?e]", f, ids["Bob"]) is None


def test_map_form_order_by_with_keys_limit_offset():
    _, db, _, _ = people()
    got = q("{:find [?n ?a] :keys [name age] :where [[?e :person/name ?n] [?e :person/age ?a]] "
            ":order-by [[?a :desc] ?n] :offset 1 :limit 2}", db)
    assert got == [{K("name"): "Eve", K("age"): 35}, {K("name"): "Ann", K("age"): 30}]
    assert q("{:find [[?a ...]] :where [[_ :person/age ?a]] :order-by [[?a :desc]]}", db) == [40, 35, 30, 25]


def test_timeout_in_map_form_and_query_map():
    import time
    register_query_fn("audit-slow", lambda x: time.sleep(0.005) or True)
    _, db, _, _ = people()
    slow = "[?a :person/name] [?b :person/name] [(audit-slow ?a)] [(audit-slow ?b)]"
    with pytest.raises(QueryTimeoutError):
        q(f"{{:find [?a ?b] :where [{slow}] :timeout 20}}", db)
    with pytest.raises(QueryTimeoutError):
        query({":query": f"[:find ?a ?b :where {slow}]", ":args": [db], ":timeout": 20})


# --- once differences from Datomic, fixed ------------------------------------------------

def test_rand_without_n_picks_one_value():
    # Datomic: "rand selects a random element from the collection being aggregated".
    _, db, _, _ = people()
    assert q("[:find (rand ?a) . :where [_ :person/age ?a]]", db) in {25, 30, 35, 40}


def test_aggregate_argument_from_input():
    # Grammar: aggregate = [aggregate-fn-name fn-arg+], fn-arg = (variable | constant | src-var).
    _, db, _, _ = people()
    assert q("[:find (max ?k ?a) . :in $ ?k :where [_ :person/age ?a]]", db, 3) == [40, 35, 30]


def test_lookup_ref_as_scalar_input():
    # Datomic: lookup refs "can be used as inputs in a parameterized query".
    _, db, _, _ = people()
    assert q("[:find ?a . :in $ ?e :where [?e :person/age ?a]]", db, [K("person/name"), "Bob"]) == 25


def test_lookup_refs_as_collection_input():
    _, db, _, _ = people()
    got = q("[:find ?a :in $ [?e ...] :where [?e :person/age ?a]]", db,
            [[K("person/name"), "Bob"], [K("person/name"), "Cid"]])
    assert got == {(25,), (40,)}


def test_vector_result_in_scalar_find():
    # bound values must be hashable: a vector binds (and comes back) as a tuple
    assert q("[:find ?x . :where [(vector 1 2) ?x]]") == (1, 2)


def test_vector_result_in_collection_find():
    assert q("[:find [?x ...] :where [(vector 1 2) ?x]]") == [(1, 2)]
