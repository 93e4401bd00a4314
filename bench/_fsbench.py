"""pyperf set-up shared by the benchmarks that measure a filesystem (bench_storage, bench_disk).

>>> import tempfile, types; d = bench_tmpdir(types.SimpleNamespace(bench_dir=None), "fd-doc-")
>>> d.startswith(tempfile.gettempdir())
True
"""

from __future__ import annotations

import atexit
import shutil
import tempfile

import pyperf


def runner_with_bench_dir(help: str):
    """A pyperf ``Runner`` with a ``--bench-dir`` option that its worker processes get too,
    and the parsed arguments: ``runner, args = runner_with_bench_dir("where to measure")``."""
    def add_cmdline_args(cmd, args):
        if args.bench_dir:
            cmd.extend(("--bench-dir", args.bench_dir))
    runner = pyperf.Runner(add_cmdline_args=add_cmdline_args)
    runner.argparser.add_argument("--bench-dir", default=None, help=help)
    return runner, runner.parse_args()


def bench_tmpdir(args, prefix: str) -> str:
    """A fresh directory under ``args.bench_dir`` (default: the temp dir), removed at exit."""
    d = tempfile.mkdtemp(prefix=prefix, dir=getattr(args, "bench_dir", None) or None)
    atexit.register(shutil.rmtree, d, True)
    return d
