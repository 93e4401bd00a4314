"""The README's Python examples run as written (a newcomer copies them)."""

import pathlib
import re

import fastdatomic as fd

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python examples"
    fd.delete_database("fastdatomic:mem://people")
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    conn = fd.connect("fastdatomic:mem://people")
    names = sorted(d.v for d in conn.db().datoms("aevt", ":person/name"))
    assert names == ["Ann", "Bob", "Cid"]
