#!/usr/bin/env python3
"""Does a wrong bearer token's answer time tell how close it is to a real one?

    python Tools/token_timing.py [--requests 3000] [--json] [--server PATH] [--model BUNDLE]

Starts one `ich-server serve` on 127.0.0.1 (fresh data directory, the seeded
test bundle unless `--model` names another, `--auth-failure-limit 0` so the
throttle never answers instead) with one read token T, then sends
`GET /v1/studies?limit=1` over one keep-alive connection with these tokens,
interleaved in a seeded random order so that drift hits every class alike:

* `random`:        a random token of T's length;
* `prefix-40`:     T with only its last 7 characters replaced;
* `last-char`:     T with only its last character changed;
* `first-char`:    T with only its first character after `ich_` changed;
* `valid`:         T itself (200; more work than a 401, shown for scale).

A server that compared the presented token byte by byte with the stored one
would answer `last-char` and `prefix-40` later than `random`. Ours hashes the
presented token (SHA-256), looks the hash up, and compares hashes in constant
time, so no wrong class should differ from `random` by more than the noise.
The noise is measured too: `random-2` is a second, independent random class.

For each wrong class the script prints the median answer time and the
difference of its median from `random`'s with a 95% bootstrap interval
(2,000 resamples), and `random-2`'s difference as the yardstick. It is a
measurement, not a test: nothing fails on a timing.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "Tests" / "python"))
import service  # noqa: E402
from service import RawConnection, Server, build_request  # noqa: E402

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def other(c: str, rng: random.Random) -> str:
    return rng.choice([a for a in ALPHABET if a != c])


def token_classes(token: str, rng: random.Random) -> dict[str, str]:
    body = token[4:]

    def random_token() -> str:
        return "ich_" + "".join(rng.choice(ALPHABET) for _ in body)

    return {
        "valid": token,
        "random": random_token(),
        "random-2": random_token(),
        "first-char": "ich_" + other(body[0], rng) + body[1:],
        "prefix-40": token[:-7] + "".join(other(c, rng) for c in token[-7:]),
        "last-char": token[:-1] + other(token[-1], rng),
    }


def measure(port: int, tokens: dict[str, str], requests: int, rng: random.Random) -> dict[str, list[float]]:
    order = [name for name in tokens for _ in range(requests)]
    rng.shuffle(order)
    wire = {name: build_request("GET", "/v1/studies?limit=1", headers=[("Authorization", f"Bearer {t}")])
            for name, t in tokens.items()}
    expected = {name: 200 if name == "valid" else 401 for name in tokens}
    times: dict[str, list[float]] = {name: [] for name in tokens}
    with RawConnection("127.0.0.1", port) as connection:
        for _ in range(200):  # warm the connection, the statement cache and the branch predictors
            connection.send(wire["random"])
            connection.read_response()
        for name in order:
            started = time.perf_counter_ns()
            connection.send(wire[name])
            response = connection.read_response()
            elapsed = time.perf_counter_ns() - started
            if response.status != expected[name]:
                raise SystemExit(f"token_timing: {name} got {response.status}, expected {expected[name]}")
            times[name].append(elapsed / 1000.0)
    return times


def median_difference(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, resamples: int = 2000) -> tuple:
    """median(a) - median(b) and its 95% bootstrap interval, in the same unit."""
    draws = [np.median(rng.choice(a, a.size)) - np.median(rng.choice(b, b.size)) for _ in range(resamples)]
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(np.median(a) - np.median(b)), float(low), float(high)


def summarise(times: dict[str, list[float]], seed: int) -> dict:
    rng = np.random.default_rng(seed)
    reference = np.array(times["random"])
    rows = {}
    for name, values in times.items():
        a = np.array(values)
        row = {"n": int(a.size), "median_us": round(float(np.median(a)), 1),
               "p10_us": round(float(np.percentile(a, 10)), 1), "p90_us": round(float(np.percentile(a, 90)), 1)}
        if name != "random":
            d, low, high = median_difference(a, reference, rng)
            row.update(diff_us=round(d, 2), ci95_us=[round(low, 2), round(high, 2)])
        rows[name] = row
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=3000, help="requests per token class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--server", type=Path)
    p.add_argument("--model", type=Path)
    p.add_argument("--json", action="store_true", help="also print one JSON object")
    args = p.parse_args(argv)

    binary = service.tool_server_binary(args.server)
    work = Path(tempfile.mkdtemp(prefix="ich-token-timing-"))
    srv = Server(work / "data", args.model.resolve() if args.model else service.test_bundle(),
                 args=["--auth-failure-limit", "0"], binary=binary, log_path=work / "server.log")
    try:
        token = srv.token("read", name="timing")
        srv.start(timeout=120)
        rng = random.Random(args.seed)
        classes = token_classes(token, rng)
        started = time.monotonic()
        times = measure(srv.port, classes, args.requests, rng)
        seconds = time.monotonic() - started
        srv.stop()
    finally:
        if srv.running:
            srv.kill()
        shutil.rmtree(work, ignore_errors=True)

    rows = summarise(times, args.seed)
    print(f"{args.requests} requests per class, interleaved, one keep-alive connection, {seconds:.0f} s")
    print(f"{'class':<11} {'median µs':>10} {'p10':>8} {'p90':>8} {'median - random':>16} {'95% interval':>20}")
    for name, row in rows.items():
        diff = f"{row['diff_us']:+.2f}" if "diff_us" in row else ""
        ci = f"[{row['ci95_us'][0]:+.2f}, {row['ci95_us'][1]:+.2f}]" if "ci95_us" in row else ""
        print(f"{name:<11} {row['median_us']:>10.1f} {row['p10_us']:>8.1f} {row['p90_us']:>8.1f} {diff:>16} {ci:>20}")
    if args.json:
        print(json.dumps({"requests": args.requests, "seconds": round(seconds, 1), "classes": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
