"""fastdatomic: a Datomic-Pro-style immutable database for Python.

The public facade. ``import fastdatomic`` stays light: no transactor, no servers.
"""

from fastdatomic.types import Keyword, Symbol, URI, kw, sym
from fastdatomic.ids import t_to_tx, tx_to_t, PART_DB, PART_TX, PART_USER
from fastdatomic.errors import FastDatomicError

__version__ = "0.1.0"
