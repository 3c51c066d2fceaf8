#!/usr/bin/env python3
"""Plots and tables from the load benchmark's results (bench/results/load-*.json).

    .venv/bin/python bench/report.py            # writes docs/perf/*.svg, prints the tables

Needs matplotlib (``pip install -e '.[bench]'``). The figures in docs/performance.md are this
script's output over the result files named there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
OUT = ROOT / "docs" / "perf"
NAMES = {
    "W1": "W1 consultation",
    "W2": "W2 publication",
    "W3": "W3 retrieval",
    "W4": "W4 mixed",
    "W5": "W5 history",
    "hello": "hello-world (same HTTP stack)",
    "bare": "bare consultation shape",
}


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((RESULTS / name).read_text()))


def table(result: dict[str, Any]) -> str:
    """The results of one run as a Markdown table, with ratios to the baselines."""
    base = result.get("baselines", {})
    by_c = {
        name: {r["concurrency"]: r for r in runs}
        for name, runs in base.items()
        if isinstance(runs, list)
    }
    pg = base.get("pgbench", {})
    lines = [
        "| workload | clients | req/s | p50 ms | p95 ms | p99 ms | errors | server CPU | "
        "db CPU | / bare | / hello | / pgbench select |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w, runs in result["workloads"].items():
        for r in runs:
            c = r["concurrency"]

            def ratio(name: str, c: int = c, r: dict[str, Any] = r) -> str:
                other = by_c.get(name, {}).get(c)
                return f"{r['rps'] / other['rps']:.2f}" if other and other["rps"] else "-"

            sel = pg.get(str(c), {}).get("select_only")
            vs_pgbench = f"{r['rps'] / sel:.3f}" if sel else "-"
            lines.append(
                f"| {NAMES.get(w, w)} | {c} | {r['rps']:,.0f} | {r['p50']:.1f} | "
                f"{r['p95']:.1f} | {r['p99']:.1f} | {r['errors']} | "
                f"{r.get('server_cpu', 0):.2f} | {r.get('db_cpu', 0):.2f} | "
                f"{ratio('bare') if w == 'W1' else '-'} | {ratio('hello')} | {vs_pgbench} |"
            )
    for name, runs in by_c.items():
        for c, r in sorted(runs.items()):
            lines.append(
                f"| {NAMES.get(name, name)} | {c} | {r['rps']:,.0f} | {r['p50']:.1f} | "
                f"{r['p95']:.1f} | {r['p99']:.1f} | {r['errors']} | "
                f"{r.get('server_cpu', 0):.2f} | {r.get('db_cpu', 0):.2f} | | | |"
            )
    for c, figures in pg.items():
        lines.append(
            f"| pgbench TPC-B-like / select-only | {c} | {figures['tpcb']:,.0f} / "
            f"{figures['select_only']:,.0f} | | | | | | | | | |"
        )
    return "\n".join(lines)


def _finish(plt: Any, fig: Any, ax: Any, name: str, x: str, y: str, title: str) -> Path:
    """Axes from zero, labels, grid and legend; the figure saved under docs/perf/."""
    ax.set_ylim(bottom=0)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = OUT / name
    fig.savefig(path)
    plt.close(fig)
    return path


def plots(main: dict[str, Any], sizes: list[dict[str, Any]] | None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    written = []
    series = dict(main["workloads"])
    for name in ("hello", "bare"):
        if name in main.get("baselines", {}):
            series[name] = main["baselines"][name]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, runs in series.items():
        cs = [r["concurrency"] for r in runs]
        style = "--" if name in ("hello", "bare") else "-"
        left.plot(cs, [r["rps"] for r in runs], style, marker="o", label=NAMES.get(name, name))
        if name not in ("hello",):
            right.plot(cs, [r["p99"] for r in runs], style, marker="o", label=NAMES.get(name, name))
    for ax, title, unit in (
        (left, "Throughput against concurrency", "requests per second"),
        (right, "p99 latency against concurrency", "milliseconds"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7)
    fig.suptitle(
        f"dmp on {main['engine']}, {main['patients']:,} patients, "
        f"{main['documents']:,} documents ({main['date'][:10]})",
        fontsize=10,
    )
    fig.tight_layout()
    path = OUT / f"concurrency-{main['engine']}.svg"
    fig.savefig(path)
    plt.close(fig)
    written.append(path)
    if sizes is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        for result in sizes:
            runs = result["workloads"]["W1"]
            ax.plot(
                [r["concurrency"] for r in runs],
                [r["rps"] for r in runs],
                marker="o",
                label=f"{result['patients']:,} patients",
            )
        ax.set_xscale("log", base=2)
        written.append(
            _finish(
                plt,
                fig,
                ax,
                "size.svg",
                "concurrent clients",
                "W1 consultations per second",
                "W1 throughput against data size",
            )
        )
    soak = main.get("soak")
    if soak:
        fig, ax = plt.subplots(figsize=(6, 4))
        t = [s["t"] for s in soak["samples"]]
        ax.plot(t, [s["server_rss_mb"] for s in soak["samples"]], label="server (all processes)")
        written.append(
            _finish(
                plt,
                fig,
                ax,
                "soak-memory.svg",
                "seconds of W4 at 32 clients",
                "resident memory, MB",
                "Memory over a 10-minute mixed run",
            )
        )
    return written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--main", default="load-postgresql-1000000.json")
    ap.add_argument("--small", default="load-postgresql-10000.json")
    ap.add_argument(
        "--size",
        nargs=2,
        default=["load-postgresql-10000-w1-final.json", "load-postgresql-1000000-w1-final.json"],
        help="two runs of W1 at two data sizes, for the size plot",
    )
    ap.add_argument(
        "--extra",
        nargs="*",
        default=[
            "load-postgresql-1000000-w1-final.json",
            "load-postgresql-10000-w1-final.json",
            "load-sqlite-10000.json",
        ],
    )
    args = ap.parse_args()
    main_result = load(args.main)
    small = load(args.small) if (RESULTS / args.small).exists() else None
    pair = [load(n) for n in args.size if (RESULTS / n).exists()]
    for path in plots(main_result, pair if len(pair) == 2 else None):
        print(f"wrote {path.relative_to(ROOT)}")
    for name in [args.main, *([args.small] if small else []), *args.extra]:
        if (RESULTS / name).exists():
            result = load(name)
            print(f"\n### {name}: {result['engine']}, {result['patients']:,} patients\n")
            print(table(result))
            if result.get("soak"):
                s = result["soak"]
                print(
                    f"\nsoak: W4 at 32 clients for {s['seconds']} s: {s['rps']} req/s, "
                    f"errors {s['errors']}, server RSS {s['rss_first_mb']} -> "
                    f"{s['rss_last_mb']} MB ({s['rss_growth']:+.1%})"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
