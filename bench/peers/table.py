"""Prints the table of `make bench-peers` from its JSON lines, each system
against the orchestrator (the first line)."""

import json
import os
import sys


def cell(value, unit=""):
    return "-" if value is None else f"{value:,.1f}{unit}"


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    ours = rows[0] if rows and "failed" not in rows[0] else {}
    env = os.environ
    print(
        f"\n{env.get('PEER_JOBS')} no-op jobs burned down {env.get('PEER_CONCURRENCY')} at a time; "
        f"then {env.get('PEER_RATE')} jobs/s for {env.get('PEER_SECONDS')} s, "
        "latency from intended enqueue to handler start\n"
    )
    header = ("system", "burn-down jobs/s", "ours ÷ it", "p50", "p99", "max", "its p99 ÷ ours")
    lines = [header]
    for row in rows:
        if "failed" in row:
            lines.append((row["system"], "failed: " + row["failed"], "", "", "", "", ""))
            continue
        rate = row.get("burn_down_per_s")
        ratio = ours.get("burn_down_per_s", 0) / rate if rate else None
        p99_ratio = row["p99_ms"] / ours["p99_ms"] if ours.get("p99_ms") and row.get("p99_ms") else None
        lines.append((
            row["system"],
            cell(rate),
            cell(ratio, "×"),
            cell(row.get("p50_ms"), " ms"),
            cell(row.get("p99_ms"), " ms"),
            cell(row.get("max_ms"), " ms"),
            cell(p99_ratio, "×"),
        ))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(str(value).ljust(width) for value, width in zip(line, widths)).rstrip())


if __name__ == "__main__":
    main(sys.argv[1])
