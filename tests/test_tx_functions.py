"""Transaction functions.

Datomic: a form [f arg ...] whose head names a function calls it with the database
before the transaction and the arguments as given; it returns tx-data that is expanded
in place, recursively (it may call further functions). A function cancels the
transaction by calling cancel (:db.error/cancelled with its message) or by throwing;
nothing of the transaction is applied then. A function is named by the ident of an
entity holding :db/fn, or by a qualified symbol on the (here: Python) classpath.
An unknown function is an error naming it.
"""

import pytest

import fastdatomic as fd
from fastdatomic import Keyword as K, Symbol

import txfns_helper
from txfns_helper import assert_tx_fails, attr, fresh_conn, user_datoms, value

SCHEMA = [
    attr(":f/id", "string", unique="identity"),
    attr(":f/n", "long"),
    attr(":f/log", "string", "many"),
]


@pytest.fixture
def conn():
    return fresh_conn(*SCHEMA)


def _new(conn, **vals):
    return conn.transact([{":db/id": "x", **{f":f/{k}": v for k, v in vals.items()}}]).tempids["x"]


def test_function_gets_db_before_and_args_and_its_result_is_transacted(conn):
    e = _new(conn, id="e1", n=1)
    seen = []

    def fn(db, ent, amount, note):
        seen.append((db.basis_t, ent, amount, note))
        cur = next(iter(db.datoms("eavt", db.entid(ent), ":f/n"))).v
        return [[":db/add", ent, ":f/n", cur + amount], [":db/add", ent, ":f/log", note]]

    fd.register_tx_fn(K("txfn/add-n"), fn)
    before = conn.db().basis_t
    r = conn.transact([[K("txfn/add-n"), [":f/id", "e1"], 5, "plus five"]])
    assert seen == [(before, [":f/id", "e1"], 5, "plus five")]
    assert user_datoms(r) == {(e, ":f/n", 1, False), (e, ":f/n", 6, True), (e, ":f/log", "plus five", True)}


def test_function_named_by_keyword_text(conn):
    e = _new(conn, n=1)
    fd.register_tx_fn(K("txfn/set-n"), lambda db, ent, v: [[":db/add", ent, ":f/n", v]])
    r = conn.transact([[":txfn/set-n", e, 9]])
    assert user_datoms(r) == {(e, ":f/n", 1, False), (e, ":f/n", 9, True)}


def test_function_may_return_map_forms(conn):
    fd.register_tx_fn(K("txfn/make"), lambda db, ident: [{":f/id": ident, ":f/n": 0}])
    r = conn.transact([[K("txfn/make"), "m1"]])
    (e,) = {d[0] for d in user_datoms(r)}
    assert user_datoms(r) == {(e, ":f/id", "m1", True), (e, ":f/n", 0, True)}


def test_expansion_is_recursive(conn):
    e = _new(conn, n=0)
    fd.register_tx_fn(K("txfn/inner"), lambda db, ent: [[":db/add", ent, ":f/log", "inner"]])
    fd.register_tx_fn(K("txfn/outer"), lambda db, ent: [[K("txfn/inner"), ent],
                                                       [":db/add", ent, ":f/log", "outer"]])
    fd.register_tx_fn(K("txfn/outermost"), lambda db, ent: [[K("txfn/outer"), ent]])
    r = conn.transact([[K("txfn/outermost"), e]])
    assert user_datoms(r) == {(e, ":f/log", "inner", True), (e, ":f/log", "outer", True)}


def test_nested_function_also_sees_db_before(conn):
    e = _new(conn, n=1)
    seen = []

    def inner(db, ent):
        seen.append(next(iter(db.datoms("eavt", ent, ":f/n"))).v)
        return []
    fd.register_tx_fn(K("txfn/see-inner"), inner)
    fd.register_tx_fn(K("txfn/see-outer"), lambda db, ent: [[":db/add", ent, ":f/n", 2], [K("txfn/see-inner"), ent]])
    conn.transact([[K("txfn/see-outer"), e]])
    assert seen == [1]


def test_function_sees_db_before_even_after_earlier_forms(conn):
    e = _new(conn, n=1)
    seen = []

    def peek(db, ent):
        seen.append(sorted(d.v for d in db.datoms("eavt", ent, ":f/log")))
        return []
    fd.register_tx_fn(K("txfn/peek"), peek)
    conn.transact([[":db/add", e, ":f/log", "written-earlier-in-tx"], [K("txfn/peek"), e]])
    assert seen == [[]]


def test_function_returning_nothing(conn):
    fd.register_tx_fn(K("txfn/noop"), lambda db: [])
    r = conn.transact([[K("txfn/noop")]])
    assert user_datoms(r) == set()


def test_cancel_with_message(conn):
    e = _new(conn, n=1)

    def guard(db, ent):
        fd.cancel("balance too low", {"entity": ent})
    fd.register_tx_fn(K("txfn/guard"), guard)
    err = assert_tx_fails(conn, [[":db/add", e, ":f/n", 2], [K("txfn/guard"), e]],
                          "db.error/cancelled", "balance too low")
    assert err.data.get("entity") == e


def test_cancel_inside_nested_function(conn):
    fd.register_tx_fn(K("txfn/nest-cancel"), lambda db: [[Symbol("txfns_helper/refuse"), 1]])
    assert_tx_fails(conn, [{":f/id": "z"}, [K("txfn/nest-cancel")]], "db.error/cancelled", "refused")


def test_python_exception_in_function_cancels(conn):
    def boom(db):
        raise ValueError("kaboom 42")
    fd.register_tx_fn(K("txfn/boom"), boom)
    assert_tx_fails(conn, [{":f/id": "z"}, [K("txfn/boom")]], "db.error/cancelled", "kaboom 42")


def test_function_returning_invalid_tx_data_fails(conn):
    fd.register_tx_fn(K("txfn/bad-result"), lambda db: [42])
    assert_tx_fails(conn, [[K("txfn/bad-result")]], "db.error/invalid-tx-data")


def test_unknown_function_fails_naming_it(conn):
    assert_tx_fails(conn, [[K("txfn/does-not-exist"), 1]], "db.error/invalid-tx-data", ":txfn/does-not-exist")


def test_unknown_symbol_function_fails_naming_it(conn):
    assert_tx_fails(conn, [[Symbol("txfns_helper/no_such_fn"), 1]], "db.error/invalid-tx-data",
                    "txfns_helper/no_such_fn")


def test_db_fn_on_ident_entity_names_importable_function(conn):
    e = _new(conn, n=1)
    conn.transact([{":db/ident": K("txfn/set-doc"), ":db/fn": Symbol("txfns_helper/add_doc")}])
    r = conn.transact([[K("txfn/set-doc"), e, "documented"]])
    assert user_datoms(r) == {(e, ":db/doc", "documented", True)}
    assert ("add_doc", (e, "documented")) in txfns_helper.CALLS


def test_db_fn_installed_from_edn(conn):
    e = _new(conn, n=1)
    conn.transact('[{:db/ident :txfn/inc :db/fn txfns_helper/inc_attr}]')
    r = conn.transact(f'[[:txfn/inc {e} :f/n 41]]')
    assert user_datoms(r) == {(e, ":f/n", 1, False), (e, ":f/n", 42, True)}


def test_classpath_function_by_symbol(conn):
    e = _new(conn, n=3)
    r = conn.transact([[Symbol("txfns_helper/inc_attr"), e, ":f/n", 2]])
    assert value(r.db_after, e, ":f/n") == 5


def test_db_fn_pointing_at_missing_function_fails(conn):
    conn.transact([{":db/ident": K("txfn/broken"), ":db/fn": Symbol("txfns_helper/not_there")}])
    assert_tx_fails(conn, [[K("txfn/broken")]], "db.error/invalid-tx-data", "not_there")


def test_ident_without_db_fn_is_not_a_function(conn):
    conn.transact([{":db/ident": K("txfn/just-an-ident")}])
    assert_tx_fails(conn, [[K("txfn/just-an-ident"), 1]], "db.error/invalid-tx-data", ":txfn/just-an-ident")


def test_runaway_recursion_fails_cleanly(conn):
    fd.register_tx_fn(K("txfn/forever"), lambda db: [[K("txfn/forever")]])
    assert_tx_fails(conn, [[K("txfn/forever")]], "db.error/invalid-tx-data", "txfn/forever")


def test_function_result_tempids_are_in_report(conn):
    fd.register_tx_fn(K("txfn/named"), lambda db: [{":db/id": "from-fn", ":f/id": "ff"}])
    r = conn.transact([[K("txfn/named")]])
    assert value(conn.db(), r.tempids["from-fn"], ":f/id") == "ff"


def test_attribute_ident_in_function_position_is_not_a_function(conn):
    assert_tx_fails(conn, [[":f/n", 1, 2]], "db.error/invalid-tx-data", ":f/n")


def test_function_registered_under_a_symbol(conn):
    e = _new(conn, n=1)
    fd.register_tx_fn(Symbol("my.fns/bump"), lambda db, ent: [[":db/add", ent, ":f/n", 100]])
    r = conn.transact([[Symbol("my.fns/bump"), e]])
    assert value(r.db_after, e, ":f/n") == 100
    r = conn.transact(f"[[my.fns/bump {e}]]")
    assert user_datoms(r) == set()


def test_function_returning_a_map_instead_of_tx_data_fails(conn):
    fd.register_tx_fn(K("txfn/returns-map"), lambda db: {":f/id": "m"})
    assert_tx_fails(conn, [[K("txfn/returns-map")]], "db.error/invalid-tx-data")
