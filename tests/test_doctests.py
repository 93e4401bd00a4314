"""Every docstring example in the package runs and gives what it shows."""

import doctest
import importlib
import pkgutil

import pytest

import fastdatomic


def _modules():
    names = []
    for info in pkgutil.walk_packages(fastdatomic.__path__, "fastdatomic."):
        names.append(info.name)
    return sorted(names)


def _extraglobs(name):
    if name in ("fastdatomic.db.database", "fastdatomic.db.report"):
        from fastdatomic.db.catalog import create_database, load_database
        from fastdatomic.storage import open_storage
        st = open_storage("mem", name=f"doctest-globs-{name}")
        create_database(st, "people")
        return {"db": load_database(st, "people")}
    if name == "fastdatomic.connection":
        import uuid
        import fastdatomic as fd
        uri = f"fastdatomic:mem://doctest-conn-{uuid.uuid4().hex}"
        fd.create_database(uri)
        conn = fd.connect(uri)
        conn.transact('[{:db/ident :person/name :db/valueType :db.type/string '
                      ':db/cardinality :db.cardinality/one :db/unique :db.unique/identity}]')
        return {"conn": conn}
    return {}


@pytest.mark.parametrize("name", _modules())
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs=_extraglobs(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
