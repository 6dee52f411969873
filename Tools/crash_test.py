#!/usr/bin/env python3
"""Crash test for `ich-server` (issue 6, "Faults"): kill -9 under load, many times.

    python Tools/crash_test.py [--cycles 20] [--clients 3] [--seed S]
                               [--server PATH] [--model BUNDLE] [--work-dir DIR] [--keep]

What it does:

1. Starts `ich-server serve` on 127.0.0.1 (ephemeral port) with a fresh data
   directory, the small seeded 128-px InceptionV3 test bundle
   (`Tests/python/service.py: test_bundle`, built once and cached) unless
   `--model` names another, `--max-batch 4 --max-delay-ms 5 --stable-age 1`
   so that batches commit often.
2. Runs `--clients` concurrent uploaders. Each posts studies in one of four
   ways: a STOW-RS request with a few 64x64 slices, a large STOW-RS request
   (512x512 slices, a 2 to 3 MB body that the server streams to `tmp/`), one
   `POST /v1/instances` per slice, or a resend of uploads whose answer it never
   got (as a PACS retries). An instance counts as *acknowledged* only when its
   upload got a 2xx answer: 202/200 for a single POST, 200/202 and listed in
   ReferencedSOPSequence (0008,1199) for STOW-RS. Clients back off while the
   queue holds more than 80 jobs (read from the database; 240 while the model
   loads, when uploads are accepted but nothing is processed, and in cycles
   that aim at a spool write), so the final drain stays short.
3. Each cycle kills the server with SIGKILL at a moment chosen by one of these
   aims, in turn (the order shuffled by the seed):
   * `random`  : a random delay (0.2 to 2.5 s) after the server is ready;
   * `commit`  : right after a batch's forward pass, inside the commit window
                 (the batch-size histogram of /metrics is recorded just before
                 the batch's results are stored; a spool file disappearing is
                 the moment just after the commit), plus 0 to 5 ms;
   * `spool`   : as soon as a new file appears in `spool/` (an upload being
                 spooled and fsynced, its job row not yet committed), just
                 after a large STOW body has been sent (0 to 40 ms later:
                 multipart parsing, decoding, spooling), or while a large body
                 streams into `tmp/`;
   * `startup` : while the model is still loading (uploads are already accepted).
   Then it restarts the server on the same data directory.
4. At the end: one clean start, the clients stop, the queue drains, and the
   checks run: every acknowledged instance answers `GET /v1/instances/{sop}`
   with status `done` (a missing one is *lost*, a `failed` one is a
   violation: every upload is a valid CT slice); in the SQLite file (opened
   read-only after a graceful SIGTERM): no duplicated SOP Instance UID, every
   instance processed (no state 0), exactly one result per instance (state 1,
   six probabilities, processed_at, model), each study's counters and maxima
   equal what its instances say, `PRAGMA integrity_check` is `ok`; no file is
   left in `spool/` or `tmp/`.

Prints a summary (with `--json`, one JSON object on the last line) and exits 1
on any violation, 2 when the server could not be started at all.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "Tests" / "python"))
import service  # noqa: E402
from service import Server, ServiceError, ct_bytes, multipart_related, new_uid  # noqa: E402

AIMS = ("random", "commit", "spool", "startup")
MAX_BATCH = 4
QUEUE_PAUSE = 80  # clients pause while more slices than this are queued (a few seconds of work)
LOADING_PAUSE = 240  # ... or, while the model loads, more than this
LABELS = ("any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")


# --------------------------------------------------------------------------
# Shared state


@dataclass
class Upload:
    sop: str
    study: str
    data: bytes


@dataclass
class State:
    """What the killer and the clients share."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int | None = None  # None while the server is down
    up: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    # The model is still loading (or a spool kill is aimed): clients back off at LOADING_PAUSE, not QUEUE_PAUSE.
    loading: threading.Event = field(default_factory=threading.Event)
    queue_depth: float = 0.0
    acknowledged: dict[str, str] = field(default_factory=dict)  # sop -> study
    sent: set[str] = field(default_factory=set)  # every SOP Instance UID ever sent
    requests: Counter = field(default_factory=Counter)  # outcome -> count
    large_sent_at: float = 0.0  # monotonic time a large STOW body was last fully sent
    # A client's uploads without an answer (or with a 5xx), for resending.
    unanswered: dict[int, list[Upload]] = field(default_factory=dict)

    def ack(self, uploads: list[Upload], sops: set[str]) -> None:
        with self.lock:
            for u in uploads:
                if u.sop in sops:
                    self.acknowledged[u.sop] = u.study

    def count(self, outcome: str) -> None:
        with self.lock:
            self.requests[outcome] += 1


# --------------------------------------------------------------------------
# Clients


def referenced_sops(body: bytes) -> set[str]:
    try:
        value = json.loads(body)
    except ValueError:
        return set()
    items = (value.get("00081199") or {}).get("Value") or []
    return {item["00081155"]["Value"][0] for item in items if "00081155" in item}


def make_uploads(rng: random.Random, count: int, size: int) -> list[Upload]:
    study = new_uid()
    series = study + ".1"
    uploads = []
    for k in range(count):
        sop = new_uid()
        data = ct_bytes(study=study, series=series, sop=sop, instance=k + 1, position=(-125.0, -125.0, 5.0 * k),
                        rows=size, cols=size, seed=rng.randrange(8), patient_name="Crash^Test")
        uploads.append(Upload(sop, study, data))
    return uploads


def client_loop(index: int, state: State, token: str, seed: int) -> None:
    rng = random.Random(seed * 1000 + index)
    state.unanswered[index] = []
    while not state.stop.is_set():
        try:
            client_step(index, state, token, rng)
        except Exception as error:  # noqa: BLE001 - a client must not die silently; counted in the summary
            state.count(f"client error: {type(error).__name__}")
            time.sleep(0.1)


def client_step(index: int, state: State, token: str, rng: random.Random) -> None:
    """One upload action (or a short wait while the server is down or busy)."""
    if not state.up.wait(0.2):
        return
    port = state.port
    if port is None:
        return
    limit = LOADING_PAUSE if state.loading.is_set() else QUEUE_PAUSE
    if state.queue_depth > limit:
        time.sleep(0.1)
        return
    client = service.Client("127.0.0.1", port, token, validate=False)
    pending = state.unanswered[index]
    roll = rng.random()
    if pending and roll < 0.2:
        uploads, mode = pending[: rng.randint(1, 4)], rng.choice(["stow", "single"])
        del pending[: len(uploads)]
    elif roll < 0.5:
        uploads, mode = make_uploads(rng, rng.randint(2, 6), 64), "stow"
    elif roll < 0.65:
        uploads, mode = make_uploads(rng, rng.randint(4, 6), 512), "stow-large"
    else:
        uploads, mode = make_uploads(rng, rng.randint(2, 5), 64), "single"
    if rng.random() < 0.05 and state.acknowledged:
        # A resend of something already acknowledged: must stay one row (duplicate warning).
        with state.lock:
            sop, study = rng.choice(sorted(state.acknowledged.items()))
        # The bytes are not kept for acknowledged uploads; a fresh file with the same UIDs is a duplicate too.
        uploads = uploads + [Upload(sop, study, ct_bytes(study=study, sop=sop, position=(0.0, 0.0, 0.0)))]
        if mode == "stow" or mode == "stow-large":
            mode = "single"  # STOW parts of one request must not mix studies here for simplicity
    with state.lock:
        state.sent.update(u.sop for u in uploads)
    if mode == "single":
        for i, u in enumerate(uploads):
            try:
                response = client.post_instance(u.data, timeout=30)
            except (OSError, service.ConnectionClosed, AssertionError, ValueError):
                state.count("single: no answer")
                pending.extend(uploads[i:])
                break
            state.count(f"single: {response.status}")
            if response.status in (200, 202):
                state.ack([u], {u.sop})
            elif response.status >= 500:
                pending.append(u)
    else:
        content_type, body = multipart_related([u.data for u in uploads])
        target = "/dicomweb/studies"
        if rng.random() < 0.5 and len({u.study for u in uploads}) == 1:
            target += "/" + uploads[0].study
        headers = [("Authorization", f"Bearer {token}"), ("Content-Type", content_type), ("Connection", "close")]
        try:
            with client.connection(timeout=30) as conn:
                conn.send(service.build_request("POST", target, headers=headers, body=body))
                if mode == "stow-large":
                    state.large_sent_at = time.monotonic()
                response = conn.read_response(method="POST", target=target, timeout=30)
        except (OSError, service.ConnectionClosed, AssertionError, ValueError):
            state.count(f"{mode}: no answer")
            pending.extend(uploads)
            return
        state.count(f"{mode}: {response.status}")
        if response.status in (200, 202):
            acked = referenced_sops(response.body)
            state.ack(uploads, acked)
            pending.extend(u for u in uploads if u.sop not in acked)
        elif response.status >= 500:
            pending.extend(uploads)
    time.sleep(rng.uniform(0, 0.05))


# --------------------------------------------------------------------------
# Watching the server


def metric(text: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", text, re.M)
    return float(match.group(1)) if match else None


def read_metrics(port: int, token: str) -> str | None:
    try:
        response = service.Client("127.0.0.1", port, token, validate=False).get("/metrics", timeout=5)
    except (OSError, service.ConnectionClosed, AssertionError, ValueError):
        return None
    return response.body.decode("utf-8", "replace") if response.status == 200 else None


def monitor_loop(state: State, db_path: Path) -> None:
    """Keeps `state.queue_depth` current for the clients' back-off: the queued jobs in the
    database (read-only), which, unlike /metrics, also counts the jobs a restart has not
    resumed yet (the model is still loading) and can be read while the server is down."""
    while not state.stop.is_set():
        if db_path.exists():
            try:
                connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
                try:
                    state.queue_depth = connection.execute("SELECT count(*) FROM instances WHERE state = 0").fetchone()[0]
                finally:
                    connection.close()
            except sqlite3.Error:
                pass
        time.sleep(0.1)


def spool_files(data_dir: Path) -> set[str]:
    try:
        return set(os.listdir(data_dir / "spool"))
    except FileNotFoundError:
        return set()


def spool_changes(data_dir: Path, deadline: float, interval: float, *, removed: bool) -> bool:
    """Polls spool/ until a file disappears (removed) or appears; False at the deadline."""
    before = spool_files(data_dir)
    while time.monotonic() < deadline:
        now = spool_files(data_dir)
        if (before - now) if removed else (now - before):
            return True
        before = now
        time.sleep(interval)
    return False


def wait_and_kill(aim: str, srv: Server, state: State, token: str, rng: random.Random, limit: float) -> str:
    """Waits for the moment `aim` looks for (at most `limit` seconds) and kills the server.
    Returns what the kill hit."""
    deadline = time.monotonic() + limit
    what = "timeout"
    if aim == "random":
        time.sleep(rng.uniform(0.2, 2.5))
        what = "random delay"
    elif aim == "commit":
        watch_spool = rng.random() < 0.5
        if watch_spool:
            # A spool file deleted: its batch has just committed; more deletions (and the next batch) follow.
            what = ("spool file deleted (just after a commit)" if spool_changes(srv.data_dir, deadline, 0.001, removed=True)
                    else "timeout waiting for a commit")
        else:
            text = read_metrics(srv.port, token)
            base = metric(text or "", "ich_batch_size_count") or 0.0
            while time.monotonic() < deadline:
                text = read_metrics(srv.port, token)
                count = metric(text or "", "ich_batch_size_count")
                if count is not None and count > base:
                    what = "batch recorded (commit window)"
                    break
                time.sleep(0.002)
            else:
                what = "timeout waiting for a batch"
        time.sleep(rng.uniform(0, 0.005))
    elif aim == "spool":
        variant = rng.random()
        if variant < 0.25:
            # A request body over 1 MiB being streamed to tmp/.
            while time.monotonic() < deadline:
                try:
                    if os.listdir(srv.data_dir / "tmp"):
                        what = "large body streaming to tmp/"
                        break
                except FileNotFoundError:
                    pass
                time.sleep(0.001)
            else:
                what = "timeout waiting for a body in tmp/"
            time.sleep(rng.uniform(0, 0.02))
        elif variant < 0.6:
            what = ("new spool file (spool write, job row not yet committed)"
                    if spool_changes(srv.data_dir, deadline, 0.0005, removed=False)
                    else "timeout waiting for a new spool file")
        else:
            mark = state.large_sent_at
            while time.monotonic() < deadline and state.large_sent_at == mark:
                time.sleep(0.001)
            what = ("large STOW body just sent (parsing, spooling)" if state.large_sent_at != mark
                    else "timeout waiting for a large STOW")
            time.sleep(rng.uniform(0, 0.04))
    elif aim == "startup":
        ready = False
        try:
            ready = srv.client(validate=False).get("/readyz", token=None, timeout=2).status == 200
        except (OSError, service.ConnectionClosed):
            pass
        what = "after the model loaded" if ready else "while the model loads"
    srv.process.send_signal(signal.SIGKILL)
    srv.process.wait(30)
    return what


# --------------------------------------------------------------------------
# Checks


@dataclass
class Report:
    cycles: int = 0
    kills: Counter = field(default_factory=Counter)
    hits: Counter = field(default_factory=Counter)  # what each kill hit
    acknowledged: int = 0
    sent: int = 0
    results: int = 0
    lost: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    duplicated: list[str] = field(default_factory=list)
    not_processed: int = 0
    bad_results: list[str] = field(default_factory=list)
    study_mismatches: list[str] = field(default_factory=list)
    integrity: str = "not checked"
    spool_left: list[str] = field(default_factory=list)
    tmp_left: list[str] = field(default_factory=list)
    rows: int = 0
    unacknowledged_stored: int = 0
    exit_code: int | None = None
    drain_seconds: float = 0.0
    seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def violations(self) -> list[str]:
        v = []
        if self.lost:
            v.append(f"{len(self.lost)} acknowledged instance(s) lost, e.g. {self.lost[:3]}")
        if self.failed:
            v.append(f"{len(self.failed)} acknowledged instance(s) failed: {Counter(self.failed.values()).most_common()}")
        if self.duplicated:
            v.append(f"duplicated SOP Instance UIDs: {self.duplicated[:3]}")
        if self.not_processed:
            v.append(f"{self.not_processed} instance(s) still queued after draining")
        if self.bad_results:
            v.append(f"rows without exactly one complete result: {self.bad_results[:3]}")
        if self.study_mismatches:
            v.append(f"study counters or maxima differ from their instances: {self.study_mismatches[:3]}")
        if self.integrity != "ok":
            v.append(f"PRAGMA integrity_check: {self.integrity}")
        if self.spool_left:
            v.append(f"files left in spool/: {self.spool_left[:5]}")
        if self.tmp_left:
            v.append(f"files left in tmp/: {self.tmp_left[:5]}")
        if self.exit_code not in (0, None):
            v.append(f"the final SIGTERM gave exit status {self.exit_code}")
        if self.acknowledged == 0:
            v.append("nothing was acknowledged: the test tested nothing")
        return v + self.problems

    def summary(self) -> dict:
        return {
            "cycles": self.cycles,
            "kills": dict(self.kills),
            "hits": dict(self.hits),
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "results": self.results,
            "lost": len(self.lost),
            "failed": len(self.failed),
            "failed_types": dict(Counter(self.failed.values())),
            "duplicated": len(self.duplicated),
            "rows": self.rows,
            "stored_without_acknowledgement": self.unacknowledged_stored,
            "integrity": self.integrity,
            "spool_left": len(self.spool_left),
            "tmp_left": len(self.tmp_left),
            "drain_seconds": round(self.drain_seconds, 1),
            "seconds": round(self.seconds, 1),
            "requests": self.requests,
            "violations": self.violations(),
        }


def wait_drained(srv: Server, token: str, timeout: float) -> bool:
    """Waits until the queue is empty (ich_queue_depth 0 twice in a row)."""
    deadline = time.monotonic() + timeout
    zeros = 0
    while time.monotonic() < deadline:
        depth = metric(read_metrics(srv.port, token) or "", "ich_queue_depth")
        zeros = zeros + 1 if depth == 0 else 0
        if zeros >= 2:
            return True
        time.sleep(0.2)
    return False


def check_api(srv: Server, token: str, state: State, report: Report, timeout: float) -> None:
    """Once the queue has drained: every acknowledged instance must be done (GET /v1/instances/{sop})."""
    started = time.monotonic()
    if not wait_drained(srv, token, timeout):
        report.problems.append(f"the queue did not drain within {timeout:.0f} s")
    report.drain_seconds = time.monotonic() - started
    client = srv.client(token, validate=False)
    waiting = sorted(state.acknowledged)
    for attempt in range(50):  # an instance still queued (a job resumed late) is looked at again
        queued = []
        for sop in waiting:
            response = client.get(f"/v1/instances/{sop}", timeout=30)
            if response.status == 404:
                report.lost.append(sop)
            elif response.status != 200:
                report.problems.append(f"GET /v1/instances/{sop}: {response.status}")
            elif response.json()["status"] == "queued":
                queued.append(sop)
            elif response.json()["status"] == "done":
                report.results += 1
            else:
                report.failed[sop] = (response.json().get("error") or {}).get("type", "?")
        waiting = queued
        if not waiting:
            break
        time.sleep(0.2)
    if waiting:
        report.problems.append(f"{len(waiting)} acknowledged instance(s) still queued after draining")


def check_database(db_path: Path, state: State, report: Report) -> None:
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        report.integrity = "; ".join(row[0] for row in connection.execute("PRAGMA integrity_check"))
        report.duplicated = [row[0] for row in connection.execute(
            "SELECT sop_instance_uid FROM instances GROUP BY sop_instance_uid HAVING count(*) > 1")]
        rows = {row[0]: row for row in connection.execute(
            "SELECT sop_instance_uid, study_instance_uid, state, spool_name, processed_at, model, "
            "p_any, p_epidural, p_intraparenchymal, p_intraventricular, p_subarachnoid, p_subdural, error_type "
            "FROM instances")}
        report.rows = len(rows)
        report.not_processed = sum(1 for r in rows.values() if r[2] == 0)
        for sop, row in rows.items():
            state_, spool_name, processed_at, model, probabilities = row[2], row[3], row[4], row[5], row[6:12]
            if state_ == 1 and (spool_name is not None or processed_at is None or not model
                                or any(p is None or not 0 <= p <= 1 for p in probabilities)):
                report.bad_results.append(sop)
            if state_ == 2 and (spool_name is not None or processed_at is None or row[12] is None):
                report.bad_results.append(sop)
        for sop, study in state.acknowledged.items():
            row = rows.get(sop)
            if row is None:
                if sop not in report.lost:
                    report.lost.append(sop)
            elif row[1] != study:
                report.bad_results.append(sop)
        report.unacknowledged_stored = len(set(rows) - set(state.acknowledged))
        stray = set(rows) - state.sent
        if stray:
            report.problems.append(f"{len(stray)} row(s) for instances never sent")
        expected = {}
        for row in connection.execute(
                "SELECT study_instance_uid, count(*), sum(state = 1), sum(state = 2), "
                "max(p_any), max(p_epidural), max(p_intraparenchymal), max(p_intraventricular), "
                "max(p_subarachnoid), max(p_subdural) FROM instances GROUP BY study_instance_uid"):
            expected[row[0]] = row[1:]
        studies = {row[0]: row[1:] for row in connection.execute(
            "SELECT study_instance_uid, received, done, failed, max_any, max_epidural, max_intraparenchymal, "
            "max_intraventricular, max_subarachnoid, max_subdural FROM studies")}
        for study in set(expected) | set(studies):
            want, have = expected.get(study), studies.get(study)
            if want is None or have is None:
                report.study_mismatches.append(f"{study}: instances {want}, studies {have}")
                continue
            if tuple(want[:3]) != tuple(have[:3]):
                report.study_mismatches.append(f"{study}: instances count/done/failed {want[:3]}, studies {have[:3]}")
                continue
            for w, h in zip(want[3:], have[3:]):
                if (w is None) != (h is None) or (w is not None and abs(w - h) > 1e-6):
                    report.study_mismatches.append(f"{study}: maxima {want[3:]} vs {have[3:]}")
                    break
    finally:
        connection.close()


# --------------------------------------------------------------------------
# Main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=20, help="kill/restart cycles (default 20)")
    parser.add_argument("--clients", type=int, default=3, help="concurrent uploaders (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock, printed)")
    parser.add_argument("--server", type=Path, default=None, help="ich-server binary (default .build/release/ich-server)")
    parser.add_argument("--model", type=Path, default=None, help="model bundle (default: the cached 128-px test bundle)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the data directory goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (kept anyway on failure)")
    parser.add_argument("--threads", type=int, default=2, help="server inference threads (default 2)")
    parser.add_argument("--drain-timeout", type=float, default=300, help="seconds to wait for the final drain")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line at the end")
    args = parser.parse_args(argv)

    seed = args.seed if args.seed is not None else int(time.time()) % 100000
    rng = random.Random(seed)
    binary = args.server.resolve() if args.server else service.server_binary()
    problem = service.binary_problem(binary)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    model = args.model.resolve() if args.model else service.test_bundle()
    work = args.work_dir.resolve() if args.work_dir else Path(tempfile.mkdtemp(prefix="ich-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    log_path = work / "server.log"
    print(f"crash test: seed {seed}, {args.cycles} cycles, {args.clients} clients, work dir {work}", flush=True)

    server_args = ["--max-batch", str(MAX_BATCH), "--max-delay-ms", "5", "--threads", str(args.threads),
                   "--stable-age", "1", "--max-body-bytes", str(64 * 1024 * 1024)]
    srv = Server(data_dir, model, args=server_args, binary=binary, log_path=log_path)
    token = srv.token("admin", name="crash-test")
    state = State()
    report = Report()
    started = time.monotonic()
    threads = [threading.Thread(target=client_loop, args=(i, state, token, seed), daemon=True)
               for i in range(args.clients)]
    threads.append(threading.Thread(target=monitor_loop, args=(state, data_dir / "ich.sqlite"), daemon=True))
    for t in threads:
        t.start()
    aims = [AIMS[i % len(AIMS)] for i in range(args.cycles)]
    rng.shuffle(aims)
    try:
        for cycle, aim in enumerate(aims, 1):
            state.loading.set()  # a PACS keeps sending while the model loads (uploads are accepted then)
            srv.start(ready=False)
            state.port = srv.port
            state.up.set()
            if aim != "startup":
                srv.wait_ready(120)
                if aim != "spool":  # a spool kill needs uploads in flight: clients keep the higher limit
                    state.loading.clear()
                time.sleep(rng.uniform(0.2, 0.8))  # let uploads and batches get going
            else:
                time.sleep(rng.uniform(0.0, 1.0))  # the model loads in about 1.5 s
            what = wait_and_kill(aim, srv, state, token, rng, limit=5.0)
            state.up.clear()
            state.loading.clear()
            state.port = None
            srv.stop()  # closes the log handle (the process is gone)
            report.cycles = cycle
            report.kills[aim] += 1
            report.hits[what] += 1
            print(f"  cycle {cycle:2d}: kill -9 ({aim}: {what}); acknowledged so far {len(state.acknowledged)}",
                  flush=True)
        # Final run: clients go on briefly on a server that is not killed, then stop.
        srv.start()
        state.port = srv.port
        state.up.set()
        time.sleep(1.0)
        state.stop.set()
        for t in threads:
            t.join(60)
        check_api(srv, token, state, report, args.drain_timeout)
        time.sleep(0.3)  # spool files are deleted right after their batch commits
        report.exit_code = srv.stop()
    except ServiceError as error:
        print(f"the server could not be run: {error}", file=sys.stderr)
        state.stop.set()
        if srv.running:
            srv.kill()
        return 2
    finally:
        state.stop.set()
    report.spool_left = sorted(spool_files(data_dir))
    report.tmp_left = sorted(os.listdir(data_dir / "tmp")) if (data_dir / "tmp").exists() else []
    report.acknowledged = len(state.acknowledged)
    report.sent = len(state.sent)
    report.requests = dict(sorted(state.requests.items()))
    check_database(data_dir / "ich.sqlite", state, report)
    report.seconds = time.monotonic() - started
    log = srv.log_text()
    criticals = [line for line in log.splitlines() if " critical " in line or " error " in line]
    orphans = sum(int(n) for n in re.findall(r"orphan_spool_files=(\d+)", log))
    summary = report.summary()
    summary["seed"] = seed
    summary["server_error_lines"] = len(criticals)
    summary["orphan_spool_files_removed"] = orphans

    print("\nsummary")
    print(f"  cycles        {report.cycles} ({', '.join(f'{k} {v}' for k, v in sorted(report.kills.items()))})")
    print(f"  kills hit     {dict(report.hits.most_common())}")
    print(f"  sent          {report.sent} instances; requests {report.requests}")
    print(f"  acknowledged  {report.acknowledged}")
    print(f"  results       {report.results} done, {len(report.failed)} failed")
    print(f"  lost          {len(report.lost)}")
    print(f"  duplicated    {len(report.duplicated)}")
    print(f"  rows          {report.rows} ({report.unacknowledged_stored} stored without an acknowledgement)")
    print(f"  orphans       {orphans} unacknowledged spool file(s) removed at restarts")
    print(f"  integrity     {report.integrity}")
    print(f"  spool / tmp   {len(report.spool_left)} / {len(report.tmp_left)} files left")
    print(f"  final exit    {report.exit_code}; drain {report.drain_seconds:.1f} s; total {report.seconds:.1f} s")
    if criticals:
        print(f"  server log    {len(criticals)} error/critical line(s), e.g. {criticals[0][:200]}")
    violations = report.violations()
    if report.failed:
        print(f"  failed        {dict(list(report.failed.items())[:5])}")
    print("  result        " + ("PASS" if not violations else "FAIL"))
    for v in violations:
        print(f"    violation: {v}")
    if violations or args.keep:
        print(f"  work dir kept: {work} (server log: {log_path})")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(summary))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
