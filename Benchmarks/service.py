#!/usr/bin/env python3
"""End to end: `ich-server` under N concurrent STOW-RS uploaders, against the forward pass alone.

    .venv/bin/python Benchmarks/service.py [--uploaders 4] [--slices 40] [--duration 60]
        [--per-slice] [--model .build-models/placeholder-inception_v3] [--threads 2]
        [--max-batch 8] [--max-delay-ms 10] [--size 512] [--poll-ms 200] [--bench-iterations 10]

What it does:

1. `ichctl bench --model M --batch B --threads T` (the forward pass alone on
   synthetic input, images/s);
2. starts `ich-server serve` (release build; --threads T --max-batch B
   --max-delay-ms D, a fresh data directory) with the same bundle and waits for
   /readyz;
3. N uploader threads, each in a closed loop for --duration seconds: build a
   40-slice study (SIZE x SIZE int16 CT slices, fresh UIDs), send it by STOW-RS
   (one multipart request per study, or with --per-slice one request per
   slice), then poll `GET /v1/studies/{uid}` every --poll-ms until every slice
   has a result, recording for each slice when its result was first visible;
   then the next study. Studies started before the deadline run to the end;
4. `ichctl bench` again (the server stopped), so the raw figure brackets the run;
5. prints a markdown summary and one JSON line.

Figures:

* service slices/s: slices with a result / (last result seen - first upload
  start): ingest, spooling, decoding, preprocessing, batching, the forward
  pass, storing and the final partial batches included;
* upload-to-result latency per slice: from the start of the request that
  carried the slice to the first poll that showed its result (so it includes
  up to --poll-ms of polling delay and the wait behind other uploaders' slices);
* raw: the mean images/s of the two `ichctl bench` runs; ratio = service / raw
  (the target is >= 0.9: the service adds little to the model).

The uploaders, the pollers and the server share the machine's cores: on a
small machine the client's own CPU use (building bodies, polling) is part of
what the ratio shows. The study bodies are made from one template study by
replacing its UID bytes, so the client spends little per study.

Binaries: `$ICH_SERVER` / --server (default .build/release/ich-server) and
`$ICHCTL` / --ichctl (default .build/release/ichctl).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "Tests" / "python"))

import service  # noqa: E402


def log(message: str) -> None:  # progress on stderr, results on stdout
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Study bodies


def fixed_length_uid(rng: random.Random) -> str:
    """2.25.<38 digits, no leading zero>: every study UID has the same length, so
    replacing one by another in a file keeps every element length."""
    return "2.25.1" + "".join(rng.choice("0123456789") for _ in range(37))


@dataclass
class Template:
    uid: str
    slices: list[bytes]  # Part-10 files whose study, series and SOP UIDs all start with `uid`

    def study(self, uid: str) -> tuple[list[str], list[bytes]]:
        """(SOP Instance UIDs, files) of a copy of the template study under `uid`."""
        assert len(uid) == len(self.uid)
        old, new = self.uid.encode(), uid.encode()
        files = [data.replace(old, new) for data in self.slices]
        sops = [f"{uid}.2.{k + 1}" for k in range(len(self.slices))]
        return sops, files


def make_template(slices: int, size: int) -> Template:
    rng = random.Random(20191)
    uid = fixed_length_uid(rng)
    files = []
    for k in range(slices):
        data = service.ct_bytes(study=uid, series=f"{uid}.1", sop=f"{uid}.2.{k + 1}", instance=k + 1,
                                position=(-125.0, -125.0, 5.0 * k), rows=size, cols=size, seed=k)
        assert data.count(uid.encode()) >= 3, "the UIDs must appear in the file verbatim"
        files.append(data)
    return Template(uid, files)


# --------------------------------------------------------------------------
# Uploaders


@dataclass
class SliceTiming:
    study: str
    sop: str
    upload_start: float
    result_seen: float | None = None
    status: str | None = None


@dataclass
class Run:
    timings: list[SliceTiming] = field(default_factory=list)
    studies: int = 0
    errors: list[str] = field(default_factory=list)
    upload_seconds: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def uploader(index: int, client, reader, template: Template, deadline: float, per_slice: bool, poll: float,
             run: Run, seed: int) -> None:
    rng = random.Random(seed * 1000 + index)
    while time.monotonic() < deadline and not run.errors:
        uid = fixed_length_uid(rng)
        sops, files = template.study(uid)
        timings = []
        if per_slice:
            for sop, data in zip(sops, files):
                start = time.monotonic()
                response = client.stow([data], uid)
                run.upload_seconds.append(time.monotonic() - start)
                if response.status != 200:
                    run.errors.append(f"STOW of one slice: {response.status} {response.body[:300]!r}")
                    return
                timings.append(SliceTiming(uid, sop, start))
        else:
            start = time.monotonic()
            response = client.stow(files, uid)
            run.upload_seconds.append(time.monotonic() - start)
            if response.status != 200:
                run.errors.append(f"STOW of a study: {response.status} {response.body[:300]!r}")
                return
            timings = [SliceTiming(uid, sop, start) for sop in sops]
        by_sop = {t.sop: t for t in timings}
        pending = set(by_sop)
        while pending:
            time.sleep(poll)
            response = reader.get(f"/v1/studies/{uid}")
            now = time.monotonic()
            if response.status != 200:
                run.errors.append(f"GET study: {response.status} {response.body[:300]!r}")
                return
            for s in response.json()["slices"]:
                if s["sopInstanceUID"] in pending and s["status"] != "queued":
                    by_sop[s["sopInstanceUID"]].result_seen = now
                    by_sop[s["sopInstanceUID"]].status = s["status"]
                    pending.discard(s["sopInstanceUID"])
            if now > deadline + 900:
                run.errors.append(f"study {uid}: {len(pending)} slices without a result 15 minutes after the deadline")
                return
        with run.lock:
            run.timings += timings
            run.studies += 1


# --------------------------------------------------------------------------
# ichctl bench


def raw_forward_pass(ichctl: Path, model: Path, batch: int, threads: int, iterations: int) -> dict:
    command = [str(ichctl), "bench", "--model", str(model), "--batch", str(batch), "--threads", str(threads),
               "--iterations", str(iterations)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100])."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def metric_values(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        match = re.match(rf"^{name}(\{{[^}}]*\}})? ([0-9.eE+-]+)$", line)
        if match:
            out[match.group(1) or ""] = float(match.group(2))
    return out


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", type=Path, default=service.server_binary())
    parser.add_argument("--ichctl", type=Path, default=service.ichctl_binary())
    parser.add_argument("--model", type=Path, default=service.PLACEHOLDER_BUNDLE)
    parser.add_argument("--uploaders", type=int, default=4)
    parser.add_argument("--slices", type=int, default=40, help="slices per study")
    parser.add_argument("--size", type=int, default=512, help="slice rows and columns")
    parser.add_argument("--duration", type=float, default=60, help="seconds during which uploaders start studies")
    parser.add_argument("--per-slice", action="store_true", help="one STOW request per slice instead of per study")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-delay-ms", type=float, default=10)
    parser.add_argument("--poll-ms", type=float, default=200)
    parser.add_argument("--bench-iterations", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the data directory and the server log")
    args = parser.parse_args(argv)

    for binary in (args.server, args.ichctl):
        problem = service.binary_problem(binary)
        if problem:
            raise SystemExit(problem)
    if not (args.model / "model.json").is_file():
        raise SystemExit(f"{args.model}/model.json not found (make placeholder-model builds the default one)")
    manifest = json.loads((args.model / "model.json").read_text())

    log(f"building the {args.slices}-slice template study ({args.size}x{args.size})")
    template = make_template(args.slices, args.size)

    log(f"ichctl bench (batch {args.max_batch}, threads {args.threads}, {args.bench_iterations} iterations)")
    raw_before = raw_forward_pass(args.ichctl, args.model, args.max_batch, args.threads, args.bench_iterations)
    log(f"  {raw_before['images_per_second']:.2f} images/s")

    work = Path(tempfile.mkdtemp(prefix="ich-service-bench-"))
    server = service.Server(work / "data", args.model, binary=args.server, log_path=work / "server.log", args=[
        "--threads", str(args.threads), "--max-batch", str(args.max_batch), "--max-delay-ms", str(args.max_delay_ms),
        "--stable-age", "1", "--log-level", "warning"])
    log(f"starting ich-server ({work})")
    started = time.monotonic()
    server.start(timeout=600)
    log(f"  ready after {time.monotonic() - started:.1f} s")
    run = Run()
    try:
        ingest = server.client(server.token("ingest", name="bench"), validate=False)
        reader = server.client(server.token("read", name="bench"), validate=False)
        admin = server.client(server.token("admin", name="bench"), validate=False)
        log(f"{args.uploaders} uploaders, {args.slices}-slice studies, "
            f"{'one request per slice' if args.per_slice else 'one request per study'}, {args.duration:g} s")
        t0 = time.monotonic()
        deadline = t0 + args.duration
        threads = [threading.Thread(target=uploader, args=(i, ingest, reader, template, deadline, args.per_slice,
                                                           args.poll_ms / 1000, run, args.seed), daemon=True)
                   for i in range(args.uploaders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - t0
        metrics = admin.get("/metrics").body.decode()
    finally:
        code = server.stop()
    if run.errors:
        log(server.log_tail())
        raise SystemExit("benchmark failed: " + "; ".join(run.errors[:3]))
    if code != 0:
        log(f"warning: ich-server exited with {code} on SIGTERM")

    log(f"ichctl bench again (batch {args.max_batch}, threads {args.threads})")
    raw_after = raw_forward_pass(args.ichctl, args.model, args.max_batch, args.threads, args.bench_iterations)
    log(f"  {raw_after['images_per_second']:.2f} images/s")

    timings = [t for t in run.timings if t.result_seen is not None]
    failed = sum(t.status == "failed" for t in timings)
    first_upload = min(t.upload_start for t in timings)
    last_result = max(t.result_seen for t in timings)
    service_rate = len(timings) / (last_result - first_upload)
    latencies = [t.result_seen - t.upload_start for t in timings]
    raw_rate = (raw_before["images_per_second"] + raw_after["images_per_second"]) / 2
    ratio = service_rate / raw_rate
    spread = abs(raw_before["images_per_second"] - raw_after["images_per_second"]) / raw_rate
    if spread > 0.1:
        log(f"warning: the forward pass ran {spread:.0%} faster or slower after the run than before: "
            "the machine's load changed, so the ratio is uncertain (see ratio_range)")
    batch = metric_values(metrics, "ich_batch_size_sum"), metric_values(metrics, "ich_batch_size_count")
    batch_sum, batch_count = sum(batch[0].values()), sum(batch[1].values())
    inference = metric_values(metrics, "ich_inference_duration_seconds_sum")
    inference_seconds = sum(inference.values())
    processed = sum(metric_values(metrics, "ich_instances_processed_total").values())

    summary = {
        "model": manifest["name"], "architecture": manifest["architecture"],
        "input": [manifest["input"]["height"], manifest["input"]["width"]],
        "uploaders": args.uploaders, "slices_per_study": args.slices, "slice_size": args.size,
        "mode": "per-slice" if args.per_slice else "per-study", "threads": args.threads, "max_batch": args.max_batch,
        "max_delay_ms": args.max_delay_ms, "duration_s": args.duration, "wall_s": round(wall, 1),
        "studies": run.studies, "slices": len(timings), "failed_slices": failed,
        "service_slices_per_second": round(service_rate, 3),
        "latency_p50_s": round(percentile(latencies, 50), 2), "latency_p99_s": round(percentile(latencies, 99), 2),
        "latency_max_s": round(max(latencies), 2),
        "upload_request_p50_s": round(statistics.median(run.upload_seconds), 3),
        "raw_images_per_second_before": round(raw_before["images_per_second"], 3),
        "raw_images_per_second_after": round(raw_after["images_per_second"], 3),
        "raw_images_per_second": round(raw_rate, 3), "ratio": round(ratio, 3),
        "ratio_range": [round(service_rate / max(raw_before["images_per_second"], raw_after["images_per_second"]), 3),
                        round(service_rate / min(raw_before["images_per_second"], raw_after["images_per_second"]), 3)],
        "mean_batch_size": round(batch_sum / batch_count, 2) if batch_count else None,
        "server_batch_seconds_per_slice": round(inference_seconds / processed, 4) if processed else None,
        "cpus": os.cpu_count(),
    }
    mode = "one STOW request per slice" if args.per_slice else "one STOW request per 40-slice study"
    print(f"""
### End-to-end service (Benchmarks/service.py)

{manifest['architecture']} {manifest['input']['height']}x{manifest['input']['width']} (`{manifest['name']}`), \
{args.uploaders} concurrent uploaders, {args.slices}-slice studies of {args.size}x{args.size} int16 CT, \
{mode}; ich-server --threads {args.threads} --max-batch {args.max_batch} --max-delay-ms {args.max_delay_ms:g}; \
{os.cpu_count()} CPUs shared by server and clients.

| measure | value |
|---|---|
| studies / slices with a result | {run.studies} / {len(timings)} ({failed} failed) |
| service throughput | {service_rate:.2f} slices/s |
| forward pass alone (`ichctl bench --batch {args.max_batch} --threads {args.threads}`) | \
{raw_rate:.2f} images/s (before {raw_before['images_per_second']:.2f}, after {raw_after['images_per_second']:.2f}) |
| **service / forward pass** | **{ratio:.2f}** (target >= 0.9; {summary['ratio_range'][0]:.2f} to \
{summary['ratio_range'][1]:.2f} against the faster and the slower raw run) |
| upload-to-result latency p50 / p99 | {summary['latency_p50_s']:.1f} s / {summary['latency_p99_s']:.1f} s \
(max {summary['latency_max_s']:.1f} s; polling every {args.poll_ms:g} ms) |
| upload request (STOW) p50 | {summary['upload_request_p50_s'] * 1000:.0f} ms |
| mean batch size (server) | {summary['mean_batch_size']} |
| server time per slice (decode + preprocess + forward, from /metrics) | \
{(summary['server_batch_seconds_per_slice'] or 0) * 1000:.0f} ms |
""")
    print(json.dumps(summary, sort_keys=True))
    if args.keep:
        log(f"kept {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
