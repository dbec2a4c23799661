"""Print a pytest-benchmark JSON as a table with speed-ups over the fp32 row of the same model."""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    data = json.load(open(path))
    rows: dict[str, dict[str, float]] = defaultdict(dict)
    info = {}
    for b in data["benchmarks"]:
        ex = b["extra_info"]
        rows[ex["model"]][ex["mode"]] = b["stats"]["median"]
        info = ex
    print(f"train step, batch {info.get('batch')}, input {info.get('input')}, {info.get('threads')} threads "
          f"({data['machine_info'].get('cpu', {}).get('brand_raw', '?')})")
    print("| model | mode | median s/step | clips/s | speed-up vs fp32 |\n| --- | --- | --- | --- | --- |")
    for model, modes in rows.items():
        base = modes.get("fp32")
        for mode, sec in modes.items():
            ratio = f"{base / sec:.2f}x" if base else "-"
            print(f"| {model} | {mode} | {sec:.3f} | {info.get('batch', 0) / sec:.1f} | {ratio} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: compare.py BENCHMARK_JSON")
    main(sys.argv[1])
