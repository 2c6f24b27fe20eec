#!/usr/bin/env python3
"""Summarises an `ncu --csv` metrics dump: time, bytes and DRAM throughput per kernel name."""
import csv
import sys
from collections import defaultdict

rows = list(csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"')))
per = defaultdict(lambda: {"n": set(), "time": 0.0, "bytes": 0.0, "pct": []})
for r in rows:
    # Template arguments and grid size tell the fused decode kernels (and their weights) apart.
    name = r["Kernel Name"].split("(")[0].replace("voxtral::", "").replace("<unnamed>::", "")
    name = (name.replace("(anonymous namespace)::", "") + " " + r.get("Grid Size", ""))[-60:]
    key = (name, r["ID"])
    e = per[name]
    e["n"].add(r["ID"])
    value = float(r["Metric Value"].replace(",", "") or 0)
    unit = r["Metric Unit"]
    if r["Metric Name"] == "gpu__time_duration.sum":
        e["time"] += value * {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}.get(unit, 1.0)
    elif r["Metric Name"] == "dram__bytes_read.sum":
        e["bytes"] += value * {"byte": 1, "B": 1, "Kbyte": 1e3, "KB": 1e3, "Mbyte": 1e6, "MB": 1e6, "Gbyte": 1e9, "GB": 1e9}.get(unit, 1)
    else:
        e["pct"].append(value)
total = sum(e["time"] for e in per.values())
print(f"{'kernel':60s} {'calls':>5s} {'us':>9s} {'share':>6s} {'MB read':>9s} {'GB/s':>7s} {'dram%':>6s}")
for name, e in sorted(per.items(), key=lambda kv: -kv[1]["time"]):
    gbs = e["bytes"] / (e["time"] * 1e3) if e["time"] else 0
    pct = sum(e["pct"]) / len(e["pct"]) if e["pct"] else 0
    print(f"{name:60s} {len(e['n']):5d} {e['time']:9.1f} {100*e['time']/total:5.1f}% {e['bytes']/1e6:9.1f} {gbs:7.0f} {pct:6.1f}")
print(f"{'total':60s} {'':5s} {total:9.1f}")
