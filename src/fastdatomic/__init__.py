"""fastdatomic: a Datomic-Pro-style immutable database for Python.

The public facade. ``import fastdatomic`` stays light: no transactor, no servers.

>>> import fastdatomic
>>> fastdatomic.create_database("fastdatomic:mem://facade")
True
>>> conn = fastdatomic.connect("fastdatomic:mem://facade")
>>> _ = conn.transact('[{:db/ident :person/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one}]')
>>> r = conn.transact([{":person/name": "Ann"}])
>>> [d.v for d in conn.db().datoms("aevt", ":person/name")]
['Ann']
>>> fastdatomic.q('[:find ?n . :where [?e :person/name ?n]]', conn.db())
'Ann'
"""

from fastdatomic.types import Keyword, Symbol, URI, kw, sym
from fastdatomic.ids import t_to_tx, tx_to_t, PART_DB, PART_TX, PART_USER
from fastdatomic.errors import FastDatomicError
from fastdatomic.api import create_database, delete_database, list_databases, connect, gc_storage
from fastdatomic.db.tx import cancel, register_tx_fn, TX_TEMPID
from fastdatomic._core.datom import Datom
from fastdatomic.query.engine import q, query, register_query_fn

__version__ = "0.1.0"

__all__ = [
    "Keyword", "Symbol", "URI", "kw", "sym", "t_to_tx", "tx_to_t", "PART_DB", "PART_TX",
    "PART_USER", "FastDatomicError", "create_database", "delete_database", "list_databases",
    "connect", "gc_storage", "cancel", "register_tx_fn", "TX_TEMPID", "Datom", "q", "query", "register_query_fn",
]
