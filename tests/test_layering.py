"""The architecture's import rules, and lint, as tests (they fail when someone breaks them).

Who may import whom (STYLE.md): ``_core`` <- ``storage`` <- ``db`` <- ``query`` <- facade modules.
``_core`` imports back only leaf modules; ``storage`` knows nothing of databases; the db
layer never reaches up into connections or the API. ``import fastdatomic`` stays light.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "fastdatomic"
LEAVES = {"fastdatomic.types", "fastdatomic.ids", "fastdatomic.errors"}

# layer -> module prefixes it may import from fastdatomic
ALLOWED = {
    "_core": LEAVES | {"fastdatomic._core"},
    "storage": LEAVES | {"fastdatomic._core", "fastdatomic.storage"},
    "db": LEAVES | {"fastdatomic._core", "fastdatomic.storage", "fastdatomic.db", "fastdatomic.edn"},
    "query": LEAVES | {"fastdatomic._core", "fastdatomic.storage", "fastdatomic.db", "fastdatomic.edn",
                       "fastdatomic.query"},
}


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "fastdatomic":   # `from fastdatomic import edn` is fastdatomic.edn
                for alias in node.names:
                    yield f"fastdatomic.{alias.name}"
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name


def _sources():
    for path in sorted(SRC.rglob("*.py")) + sorted(SRC.rglob("*.pyx")) + sorted(SRC.rglob("*.pxd")):
        rel = path.relative_to(SRC)
        layer = rel.parts[0] if len(rel.parts) > 1 else None
        if layer in ALLOWED:
            yield layer, path


@pytest.mark.parametrize("layer,path", list(_sources()), ids=lambda x: str(x).split("fastdatomic/")[-1])
def test_layer_imports(layer, path):
    if path.suffix in (".pyx", ".pxd"):
        text = path.read_text()
        mods = [line.split()[1] for line in text.splitlines()
                if line.startswith(("from fastdatomic", "import fastdatomic"))]
    else:
        mods = [m for m in _imports(path) if m.startswith("fastdatomic")]
    for mod in mods:
        assert any(mod == ok or mod.startswith(ok + ".") for ok in ALLOWED[layer]), \
            f"{path.relative_to(SRC)} ({layer} layer) imports {mod}"


def test_import_fastdatomic_stays_light():
    code = ("import sys, fastdatomic; "
            "bad = [m for m in ('uvloop', 'prometheus_client', 'asyncio') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(SRC.parent)}, check=True)
    assert out.stdout.strip() == "", f"import fastdatomic pulled in {out.stdout.strip()}"


def test_pyflakes_clean():
    pyflakes = pytest.importorskip("pyflakes.api")
    from pyflakes.reporter import Reporter
    import io
    out = io.StringIO()
    root = SRC.parent.parent
    count = pyflakes.checkRecursive([str(root / "src"), str(root / "tests")], Reporter(out, out))
    assert count == 0, out.getvalue()
