"""Time and memory of `archscope summary` against the cost of importing its dependencies.

Each measurement is a fresh process (as a user runs the command); the script reports the median
wall time and median peak RSS over --runs runs, for:

* ``import torch, click, rich`` (the floor any torch-based CLI pays),
* ``archscope summary vgg16`` and ``archscope summary vgg16 --input 3x1024x1024 --batch 64``,
* torchinfo's ``summary(vgg16, (1, 3, 224, 224))`` on the CPU (the tool users reach for today).

Usage: python benchmarks/summary_speed.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

WRAPPER = """
import resource, sys, io, contextlib
{body}
print("MAXRSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""

CASES = {
    "import torch, click, rich": "import torch, click, rich",
    "archscope summary vgg16": (
        "from archscope.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main(['summary', 'vgg16'])\n"
        "    except SystemExit as e: assert not e.code, e.code"
    ),
    "archscope summary vgg16 --input 3x1024x1024 --batch 64": (
        "from archscope.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main(['summary', 'vgg16', '--input', '3x1024x1024', '--batch', '64'])\n"
        "    except SystemExit as e: assert not e.code, e.code"
    ),
    "torchinfo.summary(vgg16, (1, 3, 224, 224)) on CPU": (
        "import torch, torchinfo\n"
        "from archscope.registry import get_entry\n"
        "torchinfo.summary(get_entry('vgg16').build(), input_size=(1, 3, 224, 224), verbose=0)"
    ),
}


def measure(body: str) -> tuple[float, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WRAPPER.format(body=body)], capture_output=True,
                          text=True, check=True)
    wall = time.perf_counter() - start
    rss_kib = next(int(line.split()[1]) for line in done.stderr.splitlines()
                   if line.startswith("MAXRSS"))
    return wall, rss_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    results = {}
    for _ in range(args.runs):  # interleave the cases so machine load hits them alike
        for name, body in CASES.items():
            results.setdefault(name, []).append(measure(body))
    base_wall = statistics.median(w for w, _ in results["import torch, click, rich"])
    base_rss = statistics.median(r for _, r in results["import torch, click, rich"])
    print(f"| command | wall s (median of {args.runs}) | × import | peak RSS MiB | × import |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        rss = statistics.median(r for _, r in runs)
        print(f"| `{name}` | {wall:.2f} | {wall / base_wall:.2f} | {rss:.0f} | {rss / base_rss:.2f} |")


if __name__ == "__main__":
    main()
