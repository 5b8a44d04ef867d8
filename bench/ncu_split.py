#!/usr/bin/env python3
"""The time of a training step split by kernel, from Nsight Compute's CSV.

usage: ncu --profile-from-start off --clock-control none \\
           --metrics gpu__time_duration.sum --csv --print-units base \\
           build/tests/gpu_bench PRESET B T STEPS ... > ncu.csv
       python3 bench/ncu_split.py STEPS < ncu.csv

gpu_bench marks its timed steps as the profiled range, so the CSV holds
STEPS steps' kernels, each timed alone (ncu serialises them): the sum is
the GPU's busy time, without the launch gaps and overlap of a real run.
Kernels are grouped by name (template arguments kept, parameters dropped).
Reads both of ncu's CSV layouts: one row per metric ("Metric Name",
"Metric Value"), or --page raw, one column per metric after a units row.
Prints a markdown table, largest first."""
import csv, sys
from collections import defaultdict

METRIC = "gpu__time_duration.sum"
SCALE = {"ns": 1e-6, "nsecond": 1e-6, "us": 1e-3, "usecond": 1e-3, "ms": 1.0, "msecond": 1.0, "s": 1e3, "second": 1e3}


def rows(lines):
    """The CSV from its header on: ncu prints its own ==PROF== lines first."""
    for i, line in enumerate(lines):
        if '"Kernel Name"' in line:
            return list(csv.DictReader(lines[i:]))
    sys.exit("ncu_split: no CSV header with \"Kernel Name\" in the input")


def number(text):
    return float(text.replace(",", ""))


def kernel_ms(table):
    """(name, milliseconds) of each kernel launch."""
    if table and "Metric Name" in table[0]:
        for r in table:
            if r.get("Metric Name") == METRIC and r.get("Metric Value"):
                yield r["Kernel Name"], number(r["Metric Value"]) * SCALE.get(r.get("Metric Unit", "ns"), 1e-6)
    elif table and METRIC in table[0]:
        unit = table[0][METRIC]   # --page raw: the first row holds the units
        for r in table[1:]:
            if r.get(METRIC):   # not a stray line after the table
                yield r["Kernel Name"], number(r[METRIC]) * SCALE.get(unit, 1e-6)
    else:
        sys.exit(f"ncu_split: no {METRIC} in the input")


def short(name):
    """The kernel's name without its parameter list, template arguments kept."""
    depth = 0
    for i, ch in enumerate(name):
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "(" and depth == 0:
            return name[:i].removeprefix("void ")
    return name


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    total, calls = defaultdict(float), defaultdict(int)
    for name, ms in kernel_ms(rows(sys.stdin.read().splitlines(keepends=True))):
        total[short(name)] += ms
        calls[short(name)] += 1
    whole = sum(total.values())
    if not whole:
        sys.exit("ncu_split: no kernel times in the input")
    print(f"GPU busy time per step: {whole / steps:.2f} ms over {sum(calls.values()) // steps} launches\n")
    print("| kernel | launches per step | ms per step | share |")
    print("| --- | ---: | ---: | ---: |")
    for name in sorted(total, key=total.get, reverse=True):
        print(f"| `{name}` | {calls[name] / steps:g} | {total[name] / steps:.3f} | {100 * total[name] / whole:.1f}% |")


if __name__ == "__main__":
    main()
