#!/usr/bin/env python3
"""Prints the table of a run.sh run from its times.tsv.

    python3 table.py results/<run>/times.tsv

One row per benchmark and Python start method: the median (min–max) of the
seconds per op of the Go benchmark and of its Python twin over the rounds,
and the ratio of the medians, Python/Go (above 1: Go is faster).
"""

import csv
import statistics
import sys


def human(sec):
    """Formats seconds with three significant digits and a unit."""
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if sec >= scale:
            return f"{sec / scale:.3g}{unit}"
    return f"{sec / 1e-9:.3g}ns"


def summary(xs):
    if not xs:
        return "n/a"
    return f"{human(statistics.median(xs))} ({human(min(xs))}–{human(max(xs))})"


def main(path):
    times = {}  # (benchmark, impl) -> [seconds]
    order = []  # benchmarks, in the order they ran
    with open(path, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            name = row["benchmark"]
            if name not in order:
                order.append(name)
            times.setdefault((name, row["impl"]), []).append(float(row["seconds"]))

    header = ("benchmark", "py start", "Go median (min–max)", "Python median (min–max)", "Py/Go", "runs")
    rows = []
    for name in order:
        go = times.get((name, "go"), [])
        methods = sorted((impl for (b, impl) in times if b == name and impl.startswith("py/")),
                         key=lambda impl: (impl != "py/fork", impl))
        for impl in methods or ["py/-"]:
            py = times.get((name, impl), [])
            ratio = f"{statistics.median(py) / statistics.median(go):.2f}" if go and py else "n/a"
            rows.append((name, impl[3:], summary(go), summary(py), ratio, f"{len(go)}/{len(py)}"))

    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(cell.ljust(w) if i < 4 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(r, widths))).rstrip())

    # Apply beside the machine's floor: a raw round trip between two processes.
    apply, floor = times.get(("Apply", "go"), []), times.get(("Floor", "go"), [])
    if apply and floor:
        print(f"\nApply / Floor (raw socketpair round trip, same run): "
              f"{human(statistics.median(apply))} / {human(statistics.median(floor))} = "
              f"{statistics.median(apply) / statistics.median(floor):.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
