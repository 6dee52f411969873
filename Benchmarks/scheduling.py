#!/usr/bin/env python3
"""Upload-to-result per study under a backlog: first in, first out by slice against by study.

    .venv/bin/python Benchmarks/scheduling.py [--long 400] [--short 30] [--shorts 4] [--gap 2]
        [--model .build-models/placeholder-inception_v3] [--threads 2] [--size 512] [--poll-ms 200]

For each order (`ICH_SCHEDULING=arrival`, what the service did before, then
`study`, the default) on a fresh server with the same bundle:

1. a long study (--long slices, a thin series) is sent by STOW-RS, 40 slices a request;
2. --gap seconds after it was stored, then every --gap seconds, a short study of
   --short slices arrives (one request each), while the long one is being processed;
3. every study is polled (`GET /v1/studies/{uid}`, every --poll-ms) until no
   slice of it is queued: its upload-to-result time runs from the start of its
   first request to that poll.

Prints a markdown table (per study: arrival, then by-study over arrival seconds)
and one JSON line. The work is the same in both runs; only the order changes,
so the last result comes at about the same time, and a short study no longer
waits for the whole long one. Urgent (STAT) studies are not part of this run.

Binaries: `$ICH_SERVER` / --server (default .build/release/ich-server).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "Tests" / "python"))

import service  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_study(slices: int, size: int, spacing: float, seed: int) -> tuple[str, list[bytes]]:
    uid = service.new_uid()
    files = [service.ct_bytes(study=uid, series=uid + ".1", sop=f"{uid}.{k + 1}", instance=k + 1,
                              position=(-125.0, -125.0, spacing * k), rows=size, cols=size, seed=seed + k)
             for k in range(slices)]
    return uid, files


def watch(reader, uid: str, started: float, poll: float, results: dict, errors: list) -> None:
    deadline = started + 3600
    while time.monotonic() < deadline:
        time.sleep(poll)
        response = reader.get(f"/v1/studies/{uid}")
        if response.status != 200:
            errors.append(f"GET study: {response.status}")
            return
        counts = response.json()["counts"]
        if counts["queued"] == 0 and counts["received"] > 0:
            results[uid] = time.monotonic() - started
            return
    errors.append("study without results after an hour")


def run(order: str, args, studies: list[tuple[str, list[bytes]]]) -> list[float]:
    work = Path(tempfile.mkdtemp(prefix=f"ich-scheduling-{order}-"))
    server = service.Server(work / "data", args.model, binary=args.server, log_path=work / "server.log",
                            args=["--threads", str(args.threads), "--stable-age", "1", "--log-level", "warning"],
                            env={"ICH_SCHEDULING": order})
    server.start(timeout=600)
    results: dict[str, float] = {}
    errors: list[str] = []
    try:
        ingest = server.client(server.token("ingest", name="bench"), validate=False)
        reader = server.client(server.token("read", name="bench"), validate=False)
        watchers = []
        for index, (uid, files) in enumerate(studies):
            if index > 0:
                time.sleep(args.gap)
            started = time.monotonic()
            for k in range(0, len(files), 40):
                response = ingest.stow(files[k:k + 40], uid)
                if response.status != 200:
                    raise SystemExit(f"STOW: {response.status} {response.body[:300]!r}")
            watcher = threading.Thread(target=watch, args=(reader, uid, started, args.poll_ms / 1000, results, errors))
            watcher.start()
            watchers.append(watcher)
        for watcher in watchers:
            watcher.join()
    finally:
        server.stop()
    if errors:
        raise SystemExit(f"{order}: " + "; ".join(errors))
    return [results[uid] for uid, _ in studies]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", type=Path, default=service.server_binary())
    parser.add_argument("--model", type=Path, default=REPO_ROOT / ".build-models" / "placeholder-inception_v3")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--long", type=int, default=400)
    parser.add_argument("--short", type=int, default=30)
    parser.add_argument("--shorts", type=int, default=4)
    parser.add_argument("--gap", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--poll-ms", type=float, default=200)
    args = parser.parse_args()
    problem = service.binary_problem(args.server)
    if problem:
        raise SystemExit(problem)
    if not (args.model / "model.json").is_file():
        raise SystemExit(f"{args.model}/model.json not found (make placeholder-model builds the default one)")

    log(f"building a {args.long}-slice study and {args.shorts} of {args.short} slices ({args.size}x{args.size})")
    studies = [make_study(args.long, args.size, 1.25, 0)]
    studies += [make_study(args.short, args.size, 5.0, 1000 * (i + 1)) for i in range(args.shorts)]
    times = {}
    for order in ("arrival", "study"):
        log(f"ICH_SCHEDULING={order}")
        times[order] = run(order, args, studies)
        log("  " + ", ".join(f"{t:.1f} s" for t in times[order]))

    names = [f"long ({args.long})"] + [f"short {i + 1} ({args.short})" for i in range(args.shorts)]
    print("| study | arrival (FIFO by slice) | study (shortest first) | study / arrival |")
    print("|---|---|---|---|")
    for name, a, s in zip(names, times["arrival"], times["study"]):
        print(f"| {name} | {a:.1f} s | {s:.1f} s | {s / a:.2f} |")
    short_a = statistics.median(times["arrival"][1:]) if args.shorts else 0
    short_s = statistics.median(times["study"][1:]) if args.shorts else 0
    if args.shorts:
        print(f"| short studies, median | {short_a:.1f} s | {short_s:.1f} s | **{short_s / short_a:.2f}** |")
    print(json.dumps({"long": args.long, "short": args.short, "shorts": args.shorts, "gap": args.gap,
                      "size": args.size, "threads": args.threads, "model": str(args.model),
                      "arrival_s": [round(t, 2) for t in times["arrival"]],
                      "study_s": [round(t, 2) for t in times["study"]]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
