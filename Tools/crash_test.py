#!/usr/bin/env python3
"""Crash test for `ich-server` (issue 6, "Faults"): kill -9 (or SIGTERM) under load, many times.

    python Tools/crash_test.py [--cycles 20] [--clients 3] [--seed S] [--reupload-deleted 0.5]
                               [--aims random,commit,spool,startup,delete,sigterm]
                               [--server PATH] [--model BUNDLE] [--work-dir DIR] [--keep] [--json]

What it does:

1. Starts `ich-server serve` on 127.0.0.1 (ephemeral port) with a fresh data
   directory, the small seeded 128-px InceptionV3 test bundle
   (`Tests/python/service.py: test_bundle`, built once and cached) unless
   `--model` names another, `--max-batch 4 --max-delay-ms 5 --stable-age 1`
   so that batches commit often, and a webhook URL on a local port that
   refuses connections (`--webhook-retry-base 30`), so that positive studies
   keep pending notifications (which a DELETE must remove).
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
   Now and then (8 % of a client's steps; 35 % in cycles aimed at a DELETE) a
   client deletes, with `DELETE /v1/studies/{uid}` (admin token), one of the
   last studies it finished uploading (every slice acknowledged by the first
   upload; its jobs may still be queued or done), and retries a DELETE that
   got no answer later. After a 204 it sends the same study again (same
   UIDs, same bytes) with probability `--reupload-deleted` (default 0.5; 0
   also keeps the other resends away from deleted studies).
3. Each cycle stops the server at a moment chosen by one of these aims (or
   those `--aims` names), in turn, the order shuffled by the seed, so that
   every aim is used once there are at least 6 cycles:
   * `random`  : kill -9 a random delay (0.2 to 2.5 s) after the server is ready;
   * `commit`  : kill -9 right after a batch's forward pass, inside the commit
                 window (the batch-size histogram of /metrics is recorded just
                 before the batch's results are stored; a spool file
                 disappearing is the moment just after the commit), plus 0 to 5 ms;
   * `spool`   : kill -9 as soon as a new file appears in `spool/` (an upload
                 being spooled and fsynced, its job row not yet committed),
                 just after a large STOW body has been sent (0 to 40 ms later:
                 multipart parsing, decoding, spooling), or while a large body
                 streams into `tmp/`;
   * `startup` : kill -9 while the model is still loading (uploads are already accepted);
   * `delete`  : kill -9 0 to 2 ms after a client has sent a DELETE (its
                 transaction, then the removal of its queued jobs' spool
                 files; a DELETE takes 1 to 120 ms here, so mostly before the
                 answer), or, in one such cycle in four, 0 to 5 ms after a
                 DELETE was answered; the client that sent it sends the
                 SIGKILL itself, so no thread switch delays it;
   * `sigterm` : SIGTERM (graceful: stop accepting, finish the requests in
                 flight and the current batch, close the database) 0.2 to
                 2.5 s after the server is ready (one in five: 0 to 1 s after
                 start, while the model loads), then SIGKILL if it has not
                 exited 0 to 1.5 s later (1.5 s times the cube of a uniform
                 random number: median 0.19 s, 40 % under 0.1 s, as a drain
                 here takes 0.01 to 0.3 s; so often during the drain). Counted:
                 exited on its own or killed, exit statuses, drain times; an
                 exit on its own with a status other than 0 is a violation.
   A server that had ended before its kill -9 (exit status other than -9)
   is a violation. Then it restarts the server on the same data directory.
4. At the end: one clean start, the clients stop, the queue drains, and the
   checks run. What must be stored follows from the client-side timeline of
   every upload attempt (sent at, answered at; a failed one ends when its
   connection broke, by when the server was gone or had answered; after a
   client timeout, never) and every DELETE (sent at, answered at, status):
   * an instance must be *present* when one of its acknowledged uploads was
     sent after every DELETE of its study that took or may have taken effect
     had ended (204, or no answer / 5xx: ended when its connection broke);
   * it must be *absent* when a DELETE answered 204 was sent after every
     upload attempt of it had ended (acknowledged or not);
   * otherwise (an upload whose time overlaps a DELETE, or a DELETE without
     answer after it) either is accepted: the order is unknown.
   A DELETE without an answer may or may not have happened, but as a whole:
   for each study, some choice of happened / not happened for its unanswered
   DELETEs must explain every one of its instances (otherwise: a half-deleted
   study). A 404 to a DELETE sent while an acknowledged instance of the study
   had to exist is a violation too.
   Then: every acknowledged instance that must be present answers
   `GET /v1/instances/{sop}` with status `done` (a missing one is *lost*, a
   `failed` one is a violation: every upload is a valid CT slice); one that
   must be absent answers 404; a deleted study answers 404 on
   `GET /v1/studies/{uid}` exactly when no instance of it is stored. In the SQLite file (opened read-only after a
   graceful SIGTERM): no duplicated SOP Instance UID, every instance processed
   (no state 0), exactly one result per instance (state 1, six probabilities,
   processed_at, model), no instance `failed`, each study's
   counters and maxima equal what its instances say (and no study row without
   instances, nor instances without a study row), no notification of a study
   that is gone, `PRAGMA integrity_check` is `ok`; no file is left in `spool/`
   or `tmp/`.

Prints a summary (with `--json`, one JSON object on the last line) and exits 1
on any violation, 2 when the server could not be started at all.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
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

AIMS = ("random", "commit", "spool", "startup", "delete", "sigterm")
MAX_BATCH = 4
QUEUE_PAUSE = 80  # clients pause while more slices than this are queued (a few seconds of work)
LOADING_PAUSE = 240  # ... or, while the model loads, more than this
DELETE_CHANCE = 0.08  # a client's step is a DELETE of a study it finished uploading ...
DELETE_CHANCE_AIMED = 0.35  # ... in cycles aimed at a DELETE
FINISHED_KEPT = 6  # the studies a client remembers (with their bytes) for deleting and sending again
SIGTERM_GRACE = 1.5  # after SIGTERM, SIGKILL if the server is still there 0 to this many seconds later
WEBHOOK_SECRET = "crash-test-webhook-secret"
LABELS = ("any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")
INF = float("inf")


# --------------------------------------------------------------------------
# Shared state


@dataclass
class Upload:
    sop: str
    study: str
    data: bytes


@dataclass
class Attempt:
    """One upload of one instance, in the client's clock (time.monotonic())."""

    start: float  # just before the request was sent
    end: float  # its answer; for a failed request the moment its connection broke (the server was gone
    #             by then, or had answered); INF after a client timeout (the server may still act on it)
    acked: bool


@dataclass
class Deletion:
    """One `DELETE /v1/studies/{uid}`."""

    study: str
    client: int
    start: float = 0.0
    end: float = INF  # as Attempt.end
    status: int | None = None  # None: no answer

    @property
    def sure(self) -> bool:
        """Answered 2xx: it took effect between start and end."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def uncertain(self) -> bool:
        """No answer or a 5xx: it may have taken effect (as a whole) between start and end, or not at all."""
        return self.status is None or self.status >= 500


@dataclass
class State:
    """What the killer and the clients share."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int | None = None  # None while the server is down
    up: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    # The model is still loading (or a spool kill is aimed): clients back off at LOADING_PAUSE, not QUEUE_PAUSE.
    loading: threading.Event = field(default_factory=threading.Event)
    # A cycle aimed at a DELETE: clients delete more often.
    more_deletes: threading.Event = field(default_factory=threading.Event)
    reupload_deleted: float = 0.5
    queue_depth: float = 0.0
    acknowledged: dict[str, str] = field(default_factory=dict)  # sop -> study, acknowledged at least once
    sent: set[str] = field(default_factory=set)  # every SOP Instance UID ever sent
    study_of: dict[str, str] = field(default_factory=dict)  # sop -> study, for every sent instance
    attempts: dict[str, list[Attempt]] = field(default_factory=dict)  # sop -> every upload of it
    deletions: list[Deletion] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)  # studies a DELETE was sent for
    requests: Counter = field(default_factory=Counter)  # outcome -> count
    large_sent_at: float = 0.0  # monotonic time a large STOW body was last fully sent
    # The `delete` aim: (after the answer?, delay, server pid) for the next client that sends a DELETE to
    # kill the server itself (no thread switch in between); it then sets `delete_kill_done`.
    kill_on_delete: tuple[bool, float, int] | None = None
    delete_kill_done: threading.Event = field(default_factory=threading.Event)
    delete_kill_label: str = ""
    # A client's uploads without an answer (or with a 5xx), for resending.
    unanswered: dict[int, list[Upload]] = field(default_factory=dict)
    # A client's studies whose first upload was acknowledged whole (candidates for a DELETE).
    finished: dict[int, list[list[Upload]]] = field(default_factory=dict)
    # A client's DELETEs without an answer (or with a 5xx), to send again.
    undeleted: dict[int, list[list[Upload]]] = field(default_factory=dict)

    def record(self, uploads: list[Upload], start: float, end: float, acked: set[str]) -> None:
        with self.lock:
            for u in uploads:
                ok = u.sop in acked
                self.attempts.setdefault(u.sop, []).append(Attempt(start, end, ok))
                if ok:
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


def failure_end(error: BaseException) -> float:
    """When a request that got no answer stopped mattering: now, as its connection broke
    (so the server had died or answered), or never after a client timeout."""
    return INF if isinstance(error, TimeoutError) else time.monotonic()


def client_loop(index: int, state: State, token: str, seed: int) -> None:
    rng = random.Random(seed * 1000 + index)
    state.unanswered[index] = []
    state.finished[index] = []
    state.undeleted[index] = []
    while not state.stop.is_set():
        try:
            client_step(index, state, token, rng)
        except Exception as error:  # noqa: BLE001 - a client must not die silently; counted in the summary
            state.count(f"client error: {type(error).__name__}")
            time.sleep(0.1)


def client_step(index: int, state: State, token: str, rng: random.Random) -> None:
    """One upload or delete action (or a short wait while the server is down or busy)."""
    if not state.up.wait(0.2):
        return
    port = state.port
    if port is None:
        return
    client = service.Client("127.0.0.1", port, token, validate=False)
    chance = DELETE_CHANCE_AIMED if state.more_deletes.is_set() else DELETE_CHANCE
    if (state.finished[index] or state.undeleted[index]) and rng.random() < chance:
        delete_study(index, state, client, token, rng)  # not held back by the queue: it shortens it
        time.sleep(rng.uniform(0, 0.05))
        return
    limit = LOADING_PAUSE if state.loading.is_set() else QUEUE_PAUSE
    if state.queue_depth > limit:
        time.sleep(0.1)
        return
    pending = state.unanswered[index]
    if state.reupload_deleted == 0:
        pending[:] = [u for u in pending if u.study not in state.deleted]
    roll = rng.random()
    fresh = False
    if pending and roll < 0.2:
        uploads, mode = pending[: rng.randint(1, 4)], rng.choice(["stow", "single"])
        del pending[: len(uploads)]
    elif roll < 0.5:
        uploads, mode, fresh = make_uploads(rng, rng.randint(2, 6), 64), "stow", True
    elif roll < 0.65:
        uploads, mode, fresh = make_uploads(rng, rng.randint(4, 6), 512), "stow-large", True
    else:
        uploads, mode, fresh = make_uploads(rng, rng.randint(2, 5), 64), "single", True
    study_uploads = list(uploads) if fresh else []
    if rng.random() < 0.05 and state.acknowledged:
        # A resend of something already acknowledged: must stay one row (duplicate warning), or, when its
        # study has been deleted meanwhile, is a new upload.
        with state.lock:
            choices = sorted(item for item in state.acknowledged.items()
                             if state.reupload_deleted > 0 or item[1] not in state.deleted)
        if choices:
            sop, study = rng.choice(choices)
            # The bytes are not kept for acknowledged uploads; a fresh file with the same UIDs is a duplicate too.
            uploads = uploads + [Upload(sop, study, ct_bytes(study=study, sop=sop, position=(0.0, 0.0, 0.0)))]
            if mode == "stow" or mode == "stow-large":
                mode = "single"  # STOW parts of one request must not mix studies here for simplicity
    acked = send_uploads(state, client, token, uploads, mode, rng, pending)
    if study_uploads and all(u.sop in acked for u in study_uploads):
        finished = state.finished[index]
        finished.append(study_uploads)
        del finished[:-FINISHED_KEPT]
    time.sleep(rng.uniform(0, 0.05))


def send_uploads(state: State, client: service.Client, token: str, uploads: list[Upload], mode: str,
                 rng: random.Random, pending: list[Upload]) -> set[str]:
    """Sends `uploads` one by one ("single") or in one STOW-RS request; records every attempt;
    puts what got no answer (or a 5xx) in `pending`. Returns the acknowledged SOP Instance UIDs."""
    with state.lock:
        state.sent.update(u.sop for u in uploads)
        for u in uploads:
            state.study_of[u.sop] = u.study
    acked: set[str] = set()
    if mode == "single":
        for i, u in enumerate(uploads):
            start = time.monotonic()
            try:
                response = client.post_instance(u.data, timeout=30)
            except (OSError, service.ConnectionClosed, AssertionError, ValueError) as error:
                state.record([u], start, failure_end(error), set())
                state.count("single: no answer")
                pending.extend(uploads[i:])
                # The rest were not sent this time: no attempt to record.
                break
            state.count(f"single: {response.status}")
            ok = {u.sop} if response.status in (200, 202) else set()
            state.record([u], start, time.monotonic(), ok)
            acked |= ok
            if response.status >= 500:
                pending.append(u)
        return acked
    content_type, body = multipart_related([u.data for u in uploads])
    target = "/dicomweb/studies"
    if rng.random() < 0.5 and len({u.study for u in uploads}) == 1:
        target += "/" + uploads[0].study
    headers = [("Authorization", f"Bearer {token}"), ("Content-Type", content_type), ("Connection", "close")]
    start = time.monotonic()
    try:
        with client.connection(timeout=30) as conn:
            start = time.monotonic()
            conn.send(service.build_request("POST", target, headers=headers, body=body))
            if mode == "stow-large":
                state.large_sent_at = time.monotonic()
            response = conn.read_response(method="POST", target=target, timeout=30)
    except (OSError, service.ConnectionClosed, AssertionError, ValueError) as error:
        state.record(uploads, start, failure_end(error), set())
        state.count(f"{mode}: no answer")
        pending.extend(uploads)
        return acked
    end = time.monotonic()
    state.count(f"{mode}: {response.status}")
    if response.status in (200, 202):
        acked = referenced_sops(response.body) & {u.sop for u in uploads}
        pending.extend(u for u in uploads if u.sop not in acked)
    elif response.status >= 500:
        pending.extend(uploads)
    state.record(uploads, start, end, acked)
    return acked


def kill_if_armed(state: State, conn: service.RawConnection | None, *, after_answer: bool,
                  status: int | None = None) -> None:
    """The `delete` aim, from the client that has just sent (or got the answer to) a DELETE."""
    with state.lock:
        armed = state.kill_on_delete
        if armed is None or armed[0] != after_answer:
            return
        state.kill_on_delete = None
    _, delay, pid = armed
    if delay:
        time.sleep(delay)
    if conn is not None:
        answered = bool(select.select([conn.sock], [], [], 0)[0])  # the answer (or EOF) is already here
        label = "DELETE answered just before the kill" if answered else "DELETE in flight (no answer yet)"
    else:
        label = f"DELETE just answered {status}"
    os.kill(pid, signal.SIGKILL)
    state.delete_kill_label = label
    state.delete_kill_done.set()


def delete_study(index: int, state: State, client: service.Client, token: str, rng: random.Random) -> None:
    """DELETEs one of the studies this client finished uploading (or one whose DELETE got no answer);
    after a 204, sends it again now and then."""
    undeleted, finished = state.undeleted[index], state.finished[index]
    if undeleted and (not finished or rng.random() < 0.5):
        uploads = undeleted.pop(0)
    else:
        uploads = finished.pop(rng.randrange(len(finished)))
    study = uploads[0].study
    target = f"/v1/studies/{study}"
    record = Deletion(study, index)
    headers = [("Authorization", f"Bearer {token}"), ("Connection", "close")]
    try:
        with client.connection(timeout=30) as conn:
            with state.lock:
                record.start = time.monotonic()
                state.deletions.append(record)
                state.deleted.add(study)
            conn.send(service.build_request("DELETE", target, headers=headers))
            kill_if_armed(state, conn, after_answer=False)
            response = conn.read_response(method="DELETE", target=target, timeout=30)
    except (OSError, service.ConnectionClosed, AssertionError, ValueError) as error:
        if record.start == 0.0:  # no connection: nothing was sent (and nothing recorded)
            state.count("delete: no connection")
        else:
            with state.lock:
                record.end = failure_end(error)
            state.count("delete: no answer")
        undeleted.append(uploads)
        return
    with state.lock:
        record.end = time.monotonic()
        record.status = response.status
    kill_if_armed(state, None, after_answer=True, status=response.status)
    state.count(f"delete: {response.status}")
    if response.status >= 500:
        undeleted.append(uploads)
    elif response.status in (200, 204) and rng.random() < state.reupload_deleted:
        # The PACS sends the study again (same UIDs, same bytes).
        state.count("reupload after delete")
        acked = send_uploads(state, client, token, list(uploads), rng.choice(["stow", "single"]), rng,
                             state.unanswered[index])
        if all(u.sop in acked for u in uploads):
            finished.append(list(uploads))
            del finished[:-FINISHED_KEPT]


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


def wait_and_kill(aim: str, srv: Server, state: State, token: str, rng: random.Random, limit: float,
                  report: "Report", early: bool = False) -> str:
    """Waits for the moment `aim` looks for (at most `limit` seconds) and kills the server
    (for `sigterm`: SIGTERM, then SIGKILL if it is still there 0 to 1.5 s later).
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
    elif aim == "delete":
        # The client sending the next DELETE kills the server itself: 0 to 2 ms after sending it, or
        # (one in four) 0 to 5 ms after its answer.
        after_answer = rng.random() < 0.25
        delay = rng.uniform(0, 0.005) if after_answer else rng.uniform(0, 0.002)
        state.delete_kill_done.clear()
        with state.lock:
            state.kill_on_delete = (after_answer, delay, srv.process.pid)
        done = state.delete_kill_done.wait(max(0.0, deadline - time.monotonic()))
        if not done:
            with state.lock:
                taken = state.kill_on_delete is None  # a client took it just now
                state.kill_on_delete = None
            done = taken and state.delete_kill_done.wait(5)
        what = state.delete_kill_label if done else "timeout waiting for a DELETE"
    elif aim == "sigterm":
        if not early:
            time.sleep(rng.uniform(0.2, 2.5))
        # 0 to 1.5 s, skewed to short delays (median 0.19 s, 40 % under 0.1 s): a drain here takes 0.01 to 0.3 s.
        grace = SIGTERM_GRACE * rng.random() ** 3
        sent = time.monotonic()
        srv.process.send_signal(signal.SIGTERM)
        when = "while the model loads" if early else "under load"
        try:
            code = srv.process.wait(grace)
            report.sigterm_exits.append(time.monotonic() - sent)
            report.sigterm_codes[str(code)] += 1
            if code != 0:
                report.problems.append(f"the server exited with status {code} after SIGTERM (cycle {report.cycles + 1})")
            what = f"SIGTERM {when}: exited on its own"
        except subprocess.TimeoutExpired:
            srv.process.send_signal(signal.SIGKILL)
            code = srv.process.wait(30)
            if code == -signal.SIGKILL:
                report.sigterm_kills.append(grace)
                report.sigterm_codes["killed (-9)"] += 1
                what = f"SIGTERM {when}: still draining, kill -9"
            else:  # it exited between the wait and the SIGKILL
                report.sigterm_exits.append(time.monotonic() - sent)
                report.sigterm_codes[str(code)] += 1
                if code != 0:
                    report.problems.append(f"the server exited with status {code} after SIGTERM (cycle {report.cycles + 1})")
                what = f"SIGTERM {when}: exited on its own"
        return what
    srv.process.send_signal(signal.SIGKILL)
    code = srv.process.wait(30)
    if code != -signal.SIGKILL:  # it had ended before the kill: a crash
        report.problems.append(f"the server exited with status {code} before the kill (cycle {report.cycles + 1}, {aim})")
    return what


# --------------------------------------------------------------------------
# Checks


def expectation(attempts: list[Attempt], effective: list[Deletion]) -> str:
    """'present', 'absent' or 'either' for one instance, given its upload attempts and the
    DELETEs of its study taken as having happened (each at some moment between its start and end)."""
    if any(a.acked and all(d.end < a.start for d in effective) for a in attempts):
        return "present"  # acknowledged after every DELETE had ended
    if any(all(p.end < d.start for p in attempts) for d in effective):
        return "absent"  # deleted after every upload of it had ended
    return "either"


def study_deletions(state: State) -> dict[str, list[Deletion]]:
    by_study: dict[str, list[Deletion]] = {}
    for d in state.deletions:
        by_study.setdefault(d.study, []).append(d)
    return by_study


def lenient_expectations(state: State) -> dict[str, str]:
    """Per sent instance, what the API must show whatever the unanswered DELETEs did:
    'present' only if acknowledged after every DELETE that did or may have taken effect,
    'absent' only if deleted (2xx) after all its uploads."""
    by_study = study_deletions(state)
    result = {}
    for sop, study in state.study_of.items():
        deletions = by_study.get(study, [])
        attempts = state.attempts.get(sop, [])
        maybe = expectation(attempts, [d for d in deletions if d.sure or d.uncertain])
        sure = expectation(attempts, [d for d in deletions if d.sure])
        result[sop] = ("present" if maybe == "present" else "absent" if sure == "absent" else "either")
    return result


@dataclass
class Report:
    cycles: int = 0
    kills: Counter = field(default_factory=Counter)
    hits: Counter = field(default_factory=Counter)  # what each kill hit
    acknowledged: int = 0
    sent: int = 0
    results: int = 0
    gone: int = 0  # acknowledged instances answering 404 where a DELETE allows it
    expected: Counter = field(default_factory=Counter)  # present / absent / either, over acknowledged instances
    lost: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    failed_after_delete: int = 0  # failed instances acknowledged again after a 2xx DELETE of their study
    duplicated: list[str] = field(default_factory=list)
    not_processed: int = 0
    bad_results: list[str] = field(default_factory=list)
    study_mismatches: list[str] = field(default_factory=list)
    deleted_present: list[str] = field(default_factory=list)  # must be gone (DELETE answered 2xx after them), still there
    half_deleted: list[str] = field(default_factory=list)  # no outcome of the unanswered DELETEs explains the study
    delete_404: list[str] = field(default_factory=list)  # 404 to a DELETE while an acknowledged instance had to exist
    study_api: list[str] = field(default_factory=list)  # GET /v1/studies/{uid} disagrees with the database
    study_status: dict[str, int] = field(default_factory=dict)  # deleted study -> GET /v1/studies/{uid} status
    deletes: Counter = field(default_factory=Counter)  # DELETE outcome -> count
    delete_ms: dict | None = None  # how long answered DELETEs took, client side
    unanswered_deletes: Counter = field(default_factory=Counter)  # happened / did not happen / cannot tell
    studies_gone: int = 0  # deleted studies with no instance left
    notifications: int = 0
    orphan_notifications: list[str] = field(default_factory=list)
    sigterm_exits: list[float] = field(default_factory=list)  # seconds from SIGTERM to the exit
    sigterm_kills: list[float] = field(default_factory=list)  # seconds from SIGTERM to the SIGKILL
    sigterm_codes: Counter = field(default_factory=Counter)
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
            v.append(f"{len(self.failed)} instance(s) failed: {Counter(self.failed.values()).most_common()}"
                     f" ({self.failed_after_delete} of them sent again after a DELETE of their study had been"
                     f" answered), e.g. {list(self.failed)[:3]}")
        if self.duplicated:
            v.append(f"duplicated SOP Instance UIDs: {self.duplicated[:3]}")
        if self.not_processed:
            v.append(f"{self.not_processed} instance(s) still queued after draining")
        if self.bad_results:
            v.append(f"rows without exactly one complete result: {self.bad_results[:3]}")
        if self.study_mismatches:
            v.append(f"study counters or maxima differ from their instances: {self.study_mismatches[:3]}")
        if self.deleted_present:
            v.append(f"{len(self.deleted_present)} instance(s) of studies deleted (204) after their uploads still "
                     f"stored: {self.deleted_present[:3]}")
        if self.half_deleted:
            v.append(f"{len(self.half_deleted)} study(ies) that no outcome of their unanswered DELETEs explains "
                     f"(half deleted?): {self.half_deleted[:3]}")
        if self.delete_404:
            v.append(f"DELETE answered 404 while an acknowledged instance had to exist: {self.delete_404[:3]}")
        if self.study_api:
            v.append(f"GET /v1/studies/{{uid}} disagrees with the database: {self.study_api[:3]}")
        if self.orphan_notifications:
            v.append(f"notifications left for studies that are gone: {self.orphan_notifications[:3]}")
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

    def sigterm_summary(self) -> dict:
        exits = sorted(self.sigterm_exits)
        return {
            "cycles": len(self.sigterm_exits) + len(self.sigterm_kills),
            "exited": len(exits),
            "killed_while_draining": len(self.sigterm_kills),
            "exit_codes": dict(self.sigterm_codes),
            "exit_seconds": ({"min": round(exits[0], 3), "median": round(statistics.median(exits), 3),
                              "max": round(exits[-1], 3)} if exits else None),
        }

    def summary(self) -> dict:
        return {
            "cycles": self.cycles,
            "kills": dict(self.kills),
            "hits": dict(self.hits),
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "expected": dict(self.expected),
            "results": self.results,
            "gone": self.gone,
            "lost": len(self.lost),
            "failed": len(self.failed),
            "failed_types": dict(Counter(self.failed.values())),
            "failed_after_delete": self.failed_after_delete,
            "duplicated": len(self.duplicated),
            "deleted_present": len(self.deleted_present),
            "half_deleted": len(self.half_deleted),
            "deletes": dict(self.deletes),
            "deletes_acknowledged": sum(n for k, n in self.deletes.items() if k.startswith("2")),
            "delete_answer_ms": self.delete_ms,
            "unanswered_deletes": dict(self.unanswered_deletes),
            "studies_deleted": len(self.study_status),
            "studies_gone": self.studies_gone,
            "notifications": self.notifications,
            "sigterm": self.sigterm_summary(),
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
    """Once the queue has drained: every acknowledged instance that must be there is done, one that
    must be gone answers 404 (GET /v1/instances/{sop}); each deleted study's GET /v1/studies/{uid}
    status is kept for comparing with the database."""
    started = time.monotonic()
    if not wait_drained(srv, token, timeout):
        report.problems.append(f"the queue did not drain within {timeout:.0f} s")
    report.drain_seconds = time.monotonic() - started
    client = srv.client(token, validate=False)
    expected = lenient_expectations(state)
    report.expected = Counter(expected[sop] for sop in state.acknowledged)
    waiting = sorted(state.acknowledged)
    for attempt in range(50):  # an instance still queued (a job resumed late) is looked at again
        queued = []
        for sop in waiting:
            response = client.get(f"/v1/instances/{sop}", timeout=30)
            if response.status == 404:
                if expected[sop] == "present":
                    report.lost.append(sop)
                else:
                    report.gone += 1
            elif response.status != 200:
                report.problems.append(f"GET /v1/instances/{sop}: {response.status}")
            elif response.json()["status"] == "queued":
                queued.append(sop)
            elif expected[sop] == "absent":
                report.deleted_present.append(sop)
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
    for study in sorted(state.deleted):
        report.study_status[study] = client.get(f"/v1/studies/{study}", timeout=30).status


def judge_study(study: str, sops: list[str], deletions: list[Deletion], state: State, stored: set[str],
                report: Report) -> None:
    """Whether some outcome (happened or not) of the study's unanswered DELETEs explains which of its
    instances are stored; reports what the closest one leaves unexplained."""
    sure = [d for d in deletions if d.sure]
    unsure = [d for d in deletions if d.uncertain]
    if len(unsure) > 10:  # too many outcomes to try: the lenient rule only (each DELETE may or may not count)
        for sop in sops:
            attempts = state.attempts.get(sop, [])
            if expectation(attempts, sure + unsure) == "present" and sop not in stored and sop not in report.lost:
                report.lost.append(sop)
            if expectation(attempts, sure) == "absent" and sop in stored and sop not in report.deleted_present:
                report.deleted_present.append(sop)
        return
    best: list[tuple[str, str]] | None = None
    consistent = []
    for choice in itertools.product((False, True), repeat=len(unsure)):
        effective = sure + [d for d, happened in zip(unsure, choice) if happened]
        wrong = []
        for sop in sops:
            want = expectation(state.attempts.get(sop, []), effective)
            if want == "present" and sop not in stored:
                wrong.append((sop, "missing"))
            elif want == "absent" and sop in stored:
                wrong.append((sop, "still stored"))
        if not wrong:
            consistent.append(choice)
        elif best is None or len(wrong) < len(best):
            best = wrong
    if consistent:
        for i, d in enumerate(unsure):  # what the stored state says each unanswered DELETE did
            outcomes = {choice[i] for choice in consistent}
            report.unanswered_deletes["happened" if outcomes == {True} else "did not happen" if outcomes == {False}
                                      else "cannot tell"] += 1
        return
    assert best is not None
    if unsure:
        report.half_deleted.append(
            f"{study}: {len(sops)} instance(s), {len(stored & set(sops))} stored, {len(sure)} DELETE(s) answered 2xx, "
            f"{len(unsure)} unanswered; closest outcome leaves {Counter(w for _, w in best)}")
    else:
        for sop, what in best:
            if what == "missing":
                if sop not in report.lost:
                    report.lost.append(sop)
            elif sop not in report.deleted_present:
                report.deleted_present.append(sop)


def check_deletions(state: State, stored: set[str], study_rows: set[str], report: Report) -> None:
    by_study = study_deletions(state)
    sops_of: dict[str, list[str]] = {}
    for sop, study in state.study_of.items():
        sops_of.setdefault(study, []).append(sop)
    report.deletes = Counter("no answer" if d.status is None else str(d.status) for d in state.deletions)
    took = sorted(1000 * (d.end - d.start) for d in state.deletions if d.status is not None)
    if took:
        report.delete_ms = {"min": round(took[0], 1), "median": round(statistics.median(took), 1),
                            "max": round(took[-1], 1)}
    for study, sops in sops_of.items():
        deletions = by_study.get(study, [])
        if not deletions:
            for sop in sops:
                if sop in state.acknowledged and sop not in stored and sop not in report.lost:
                    report.lost.append(sop)
            continue
        judge_study(study, sops, deletions, state, stored, report)
        # A 404 while an instance acknowledged before it, and not deleted since, had to exist.
        for d4 in (d for d in deletions if d.status == 404):
            others = [d for d in deletions if d is not d4 and (d.sure or d.uncertain)]
            witness = next((sop for sop in sops for a in state.attempts.get(sop, [])
                            if a.acked and a.end < d4.start
                            and all(d.end < a.start or d.start > d4.end for d in others)), None)
            if witness:
                report.delete_404.append(f"{study} (instance {witness})")
    for study, status in report.study_status.items():
        has_instances = any(sop in stored for sop in sops_of.get(study, []))
        if not has_instances:
            report.studies_gone += 1
        if status == 404 and (has_instances or study in study_rows):
            report.study_api.append(f"{study}: 404 but stored")
        elif status == 200 and not has_instances:
            report.study_api.append(f"{study}: 200 but no instance stored")
        elif status not in (200, 404):
            report.study_api.append(f"{study}: {status}")


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
            if state_ == 2 and sop not in report.failed:  # every upload is a valid CT slice
                report.failed[sop] = row[12] or "?"
            expected_study = state.study_of.get(sop)
            if expected_study is not None and row[1] != expected_study:
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
        notified = dict(connection.execute(
            "SELECT study_instance_uid, count(*) FROM notifications GROUP BY study_instance_uid").fetchall())
        report.notifications = sum(notified.values())
        report.orphan_notifications = sorted(s for s in notified if s not in studies)
        check_deletions(state, set(rows), set(studies), report)
        by_study = study_deletions(state)
        report.failed_after_delete = sum(
            1 for sop in report.failed
            if any(a.acked and a.start > d.end for a in state.attempts.get(sop, [])
                   for d in by_study.get(state.study_of.get(sop, ""), []) if d.sure))
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
    parser.add_argument("--reupload-deleted", type=float, default=0.5,
                        help="chance that a client sends a study again right after its DELETE got 204 (default 0.5; "
                             "0 also keeps resends of acknowledged instances away from deleted studies)")
    parser.add_argument("--aims", default=",".join(AIMS),
                        help=f"comma-separated aims to rotate through (default all: {','.join(AIMS)})")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line at the end")
    args = parser.parse_args(argv)
    aim_list = [a.strip() for a in args.aims.split(",") if a.strip()]
    if not aim_list or any(a not in AIMS for a in aim_list):
        parser.error(f"--aims takes some of {', '.join(AIMS)}")

    seed = args.seed if args.seed is not None else int(time.time()) % 100000
    rng = random.Random(seed)
    binary = service.tool_server_binary(args.server)
    model = args.model.resolve() if args.model else service.test_bundle()
    work = args.work_dir.resolve() if args.work_dir else Path(tempfile.mkdtemp(prefix="ich-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    log_path = work / "server.log"
    print(f"crash test: seed {seed}, {args.cycles} cycles, {args.clients} clients, work dir {work}", flush=True)

    # A webhook endpoint that refuses every connection (bound, never listening): positive studies keep
    # their notifications pending, and a DELETE must take them away.
    refuser = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    refuser.bind(("127.0.0.1", 0))
    webhook = f"http://127.0.0.1:{refuser.getsockname()[1]}/crash-test-hook"
    server_args = ["--max-batch", str(MAX_BATCH), "--max-delay-ms", "5", "--threads", str(args.threads),
                   "--stable-age", "1", "--max-body-bytes", str(64 * 1024 * 1024),
                   "--webhook-url", webhook, "--webhook-retry-base", "30"]
    srv = Server(data_dir, model, args=server_args, binary=binary, log_path=log_path,
                 env={"ICH_WEBHOOK_SECRET": WEBHOOK_SECRET})
    token = srv.token("admin", name="crash-test")
    state = State(reupload_deleted=args.reupload_deleted)
    report = Report()
    started = time.monotonic()
    threads = [threading.Thread(target=client_loop, args=(i, state, token, seed), daemon=True)
               for i in range(args.clients)]
    threads.append(threading.Thread(target=monitor_loop, args=(state, data_dir / "ich.sqlite"), daemon=True))
    for t in threads:
        t.start()
    aims = [aim_list[i % len(aim_list)] for i in range(args.cycles)]
    rng.shuffle(aims)
    try:
        for cycle, aim in enumerate(aims, 1):
            # SIGTERM cycles: one in five while the model loads.
            early = aim == "startup" or (aim == "sigterm" and rng.random() < 0.2)
            state.loading.set()  # a PACS keeps sending while the model loads (uploads are accepted then)
            srv.start(ready=False)
            state.port = srv.port
            state.up.set()
            if not early:
                srv.wait_ready(120)
                if aim != "spool":  # a spool kill needs uploads in flight: clients keep the higher limit
                    state.loading.clear()
                time.sleep(rng.uniform(0.2, 0.8))  # let uploads and batches get going
            else:
                time.sleep(rng.uniform(0.0, 1.0))  # the model loads in about 1.5 s
            if aim == "delete":
                state.more_deletes.set()
            what = wait_and_kill(aim, srv, state, token, rng, limit=5.0, report=report, early=early)
            state.up.clear()
            state.loading.clear()
            state.more_deletes.clear()
            state.port = None
            srv.stop()  # closes the log handle (the process is gone)
            report.cycles = cycle
            report.kills[aim] += 1
            report.hits[what] += 1
            how = "stop" if aim == "sigterm" else "kill -9"
            print(f"  cycle {cycle:2d}: {how} ({aim}: {what}); acknowledged so far {len(state.acknowledged)}, "
                  f"DELETEs sent {len(state.deletions)}", flush=True)
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
        refuser.close()
    report.spool_left = sorted(spool_files(data_dir))
    report.tmp_left = sorted(os.listdir(data_dir / "tmp")) if (data_dir / "tmp").exists() else []
    report.acknowledged = len(state.acknowledged)
    report.sent = len(state.sent)
    report.requests = dict(sorted(state.requests.items()))
    check_database(data_dir / "ich.sqlite", state, report)
    report.seconds = time.monotonic() - started
    log = srv.log_text()
    criticals = [line for line in log.splitlines() if re.match(r"\S+ (error|critical) ", line)]
    orphans = sum(int(n) for n in re.findall(r"orphan_spool_files=(\d+)", log))
    summary = report.summary()
    summary["seed"] = seed
    summary["reupload_deleted"] = args.reupload_deleted
    summary["server_error_lines"] = len(criticals)
    summary["orphan_spool_files_removed"] = orphans
    sigterm = summary["sigterm"]

    print("\nsummary")
    print(f"  cycles        {report.cycles} ({', '.join(f'{k} {v}' for k, v in sorted(report.kills.items()))})")
    print(f"  kills hit     {dict(report.hits.most_common())}")
    print(f"  sigterm       {sigterm['exited']} exited on their own, {sigterm['killed_while_draining']} killed while "
          f"draining; exit statuses {sigterm['exit_codes']}; exit after SIGTERM {sigterm['exit_seconds']} s")
    print(f"  sent          {report.sent} instances; requests {report.requests}")
    print(f"  acknowledged  {report.acknowledged} ({dict(report.expected)}: must be there / must be gone / either)")
    print(f"  results       {report.results} done, {report.gone} gone (deleted), {len(report.failed)} failed")
    print(f"  deletes       {dict(report.deletes)} (answered in {report.delete_ms} ms); "
          f"{len(report.study_status)} studies deleted, {report.studies_gone} of them gone at the end; "
          f"unanswered ones: {dict(report.unanswered_deletes)}")
    print(f"  lost          {len(report.lost)}")
    print(f"  deleted kept  {len(report.deleted_present)}; half deleted {len(report.half_deleted)}")
    print(f"  duplicated    {len(report.duplicated)}")
    print(f"  rows          {report.rows} ({report.unacknowledged_stored} stored without an acknowledgement)")
    print(f"  notifications {report.notifications} ({len(report.orphan_notifications)} of studies that are gone)")
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
