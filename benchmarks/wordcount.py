"""A real job: the word frequencies of every file under /usr/share/doc (one item per
file, the counts merged in one place), as a whole process, start-up included, run
alternately by

* the sequential loop;
* ``multiprocessing.Pool(N).map`` (its default chunksize), merging in the caller;
* ``zmqpipeline run benchmarks/wordcount --workers N`` (the pipeline in
  ``benchmarks/wordcount/``: a Task whose ``items()`` lists the files, a worker, a
  collector that merges the counts);
* ``zmqpipeline.Executor(workers=N).map`` (its default chunksize), merging in the caller.

Each file's result is its number of words, summed; with ``--frequencies``, a dict of each
word's count, merged (much more to carry and to merge in one place).

Every way must find the same number of files and words (checked). Wall time per way:
median [min..max] over the rounds.

Every way runs from bytecode, as an installed package does (pip compiles it on install;
the standard library's comes compiled): the package and the pipeline folder are compiled
first, since an editable install under ``PYTHONDONTWRITEBYTECODE=1`` (set on our machines)
would otherwise compile every module of zmqpipeline afresh in each run (about 80 ms).

    python benchmarks/wordcount.py                 # 5 rounds, 2 workers, /usr/share/doc
    python benchmarks/wordcount.py --rounds 3 --root /usr/share/doc --workers 2
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
PIPELINE = os.path.join(HERE, "wordcount")
ROOT_DIR = os.path.dirname(HERE)
WAYS = ("sequential", "pool", "zmqpipeline run", "executor")
FREQUENCIES = os.environ.get("WORDCOUNT_FREQUENCIES") == "1"


def _merge(counts: list[Any]) -> dict[str, int]:
    if FREQUENCIES:
        total: Counter[str] = Counter()
        for one in counts:
            total.update(one)
        return {"files": len(counts), "words": sum(total.values())}
    return {"files": len(counts), "words": sum(counts)}


def _in_process(way: str, root: str, workers: int) -> dict[str, int]:
    """One way, run in this (fresh) process: its files and words."""
    sys.path.insert(0, PIPELINE)
    import counting

    files = counting.files(root)
    count = counting.word_frequencies if FREQUENCIES else counting.count_words
    if way == "sequential":
        return _merge([count(path) for path in files])
    if way == "pool":
        import multiprocessing

        with multiprocessing.Pool(workers) as pool:
            return _merge(pool.map(count, files))
    sys.path.insert(0, ROOT_DIR)
    import zmqpipeline

    with zmqpipeline.Executor(workers=workers) as ex:
        return _merge(list(ex.map(count, files)))


def _time(way: str, root: str, workers: int) -> tuple[float, dict[str, int]]:
    env = dict(os.environ, WORDCOUNT_ROOT=root, PYTHONPATH=ROOT_DIR)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "counts.json")
        env["WORDCOUNT_OUT"] = out
        if way == "zmqpipeline run":
            cmd = [sys.executable, "-m", "zmqpipeline", "run", PIPELINE]
            cmd += ["--workers", str(workers), "--quiet"]
        else:
            cmd = [sys.executable, __file__, "--as", way, "--root", root]
            cmd += ["--workers", str(workers), "--out", out]
        start = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        with open(out) as f:
            found = json.load(f)
    return elapsed, {"files": found["files"], "words": found["words"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="/usr/share/doc", help="the files to count")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--frequencies",
        action="store_true",
        help="count each word and merge the counts (a dict per file), not just the words",
    )
    parser.add_argument("--as", dest="way", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.frequencies:
        os.environ["WORDCOUNT_FREQUENCIES"] = "1"  # the child processes read it
    if args.way:  # one way, in this process (the parent times it)
        with open(args.out, "w") as f:
            json.dump(_in_process(args.way, args.root, args.workers), f)
        return
    for folder in (os.path.join(ROOT_DIR, "zmqpipeline"), PIPELINE):
        compileall.compile_dir(folder, quiet=1)
    what = "word frequencies" if args.frequencies else "word count"
    print(f"{what} over {args.root}, {args.workers} workers, {args.rounds} rounds")
    print(f"cpus {os.cpu_count()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    found: dict[str, dict[str, int]] = {}
    for r in range(args.rounds):
        order = WAYS if r % 2 == 0 else WAYS[::-1]  # alternated: no way always first
        for way in order:
            elapsed, found[way] = _time(way, args.root, args.workers)
            times[way].append(elapsed)
            print(f"  [round {r + 1}] {way:16} {elapsed:6.2f} s  {found[way]}")
    if len({json.dumps(v, sort_keys=True) for v in found.values()}) != 1:
        sys.exit(f"the ways disagree: {found}")
    pool = statistics.median(times["pool"])
    print(f"\n{'way':16} {'median s':>9} {'[min..max]':>16} {'/ Pool.map':>10}")
    for way in WAYS:
        t = times[way]
        med = statistics.median(t)
        print(f"{way:16} {med:9.2f} [{min(t):6.2f}..{max(t):6.2f}] {med / pool:10.2f}")
    print(f"({found['pool']['files']} files, {found['pool']['words']} words, every way the same)")


if __name__ == "__main__":
    main()
