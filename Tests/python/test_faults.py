"""Faults of issue 6 against the real `ich-server`: bad model bundles, an
unusable data directory or database at start-up, a full disk, a read-only
file system and a locked database at run time.

What an operator needs, and what these tests require:

* start-up that cannot succeed ends with exit status 1 within a bounded time
  and one clear message naming the problem (repeated lines with the same
  message are tolerated here; see `test_model_load_failure_is_logged_once`),
  no Swift fatal error, no stack trace, no other output; /readyz never says
  ready meanwhile;
* at run time a fault gives a 503 `application/problem+json` with
  `Retry-After` (never a 500, never a hang), /healthz keeps answering, and
  nothing acknowledged is lost or half-written: after the fault clears, every
  acknowledged instance has exactly one complete result, nothing refused was
  kept, spool/ and tmp/ are empty and `PRAGMA integrity_check` is ok.

Reads of studies and instances write an audit row first and are refused with
503 `database-unavailable` when that row cannot be written (by design, see
`ServiceContext.audit`); the tests accept 200 or that 503.

Mounts need root: the tmpfs tests (`mount -t tmpfs -o size=3m`) and the ext4
loop-device test skip themselves with the reason when not root or when the
mount fails. Two tests that hold the disk full for more than the server's
retry time (~82 s) run only with ICH_FAULTS_LONG=1.

    ICH_SERVER=/tmp/snap/ich-server .venv/bin/pytest -q -rsxX Tests/python/test_faults.py
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402
from service import Server, assert_problem, make_study  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
EXIT_TIMEOUT = 60.0  # seconds a failing start may take to exit (generous: observed 0.1 to 1 s)
LONG = bool(os.environ.get("ICH_FAULTS_LONG"))
LABELS = service.LABELS

CRASH = re.compile(r"Fatal error|Current stack trace|Stack dump|Program crashed|\U0001F4A3|Segmentation fault|"
                   r"Illegal instruction|SIG(SEGV|ILL|ABRT|BUS|TRAP)|Thread \d+ crashed|backtrace|"
                   r"precondition failed|Assertion failed", re.I)
# swift-log's StreamLogHandler: "2026-11-27T18:53:43+0000 critical ich-server: key=value [Source] message"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\S+ (trace|debug|info|notice|warning|error|critical) ich-server: (.*)$")


@pytest.fixture(scope="module", autouse=True)
def server_binary():
    problem = service.binary_problem(service.server_binary())
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="module")
def bundle() -> Path:
    return service.test_bundle()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ICH_")}


# --------------------------------------------------------------------------
# Servers and mounts that a test leaves behind are cleaned up here


class Rig:
    """Servers and mounts of one test; `cleanup` kills the servers, then unmounts."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.servers: list[Server] = []
        self.points: list[Path] = []

    def server(self, data_dir: Path, model: Path, args=(), name: str = "server", env: dict[str, str] | None = None) -> Server:
        srv = Server(data_dir, model, args=list(args), log_path=self.tmp_path / f"{name}.log", env=env)
        self.servers.append(srv)
        return srv

    @staticmethod
    def require_root() -> None:
        if os.geteuid() != 0:
            pytest.skip("needs root to mount a file system (tmpfs or a loop device)")

    def mount(self, *args: str, point: Path, what: str) -> Path:
        self.require_root()
        point.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["mount", *args, str(point)], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            pytest.skip(f"cannot mount {what}: {result.stderr.strip() or result.returncode}")
        self.points.append(point)
        return point

    def tmpfs(self, point: Path, size: str = "3m") -> Path:
        return self.mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", point=point, what=f"a {size} tmpfs")

    def remount(self, point: Path, options: str) -> None:
        result = subprocess.run(["mount", "-o", f"remount,{options}", str(point)], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, f"mount -o remount,{options} {point}: {result.stderr}"

    def umount(self, point: Path) -> None:
        result = subprocess.run(["umount", str(point)], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=60)
        if point in self.points:
            self.points.remove(point)

    def cleanup(self) -> None:
        for srv in self.servers:
            if srv.running:
                srv.kill()
        for point in reversed(list(self.points)):
            self.umount(point)


@pytest.fixture
def rig(tmp_path):
    rig = Rig(tmp_path)
    yield rig
    rig.cleanup()


def fill(directory: Path) -> Path:
    """Writes `directory`/filler until the file system is full; returns its path."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (b"\0" * 65536, b"\0" * 4096, b"\0"):
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    stat = os.statvfs(directory)
    assert stat.f_bavail * stat.f_frsize < 8192, f"{directory} not full after writing {filler}"
    return filler


def free_bytes(filler: Path, amount: int) -> None:
    os.truncate(filler, max(0, filler.stat().st_size - amount))


def wait_for_log(srv: Server, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in srv.log_text():
        assert time.monotonic() < deadline, f"no {text!r} in the server log after {timeout} s:\n{srv.log_tail()}"
        time.sleep(0.1)


def assert_unavailable(response: service.Response, slug: str) -> dict:
    """503, problem+json with this slug, a positive integer Retry-After."""
    problem = assert_problem(response, 503, slug)
    retry = response.header("Retry-After")
    assert retry is not None and retry.isdigit() and int(retry) > 0, f"Retry-After {retry!r}: {response!r}"
    return problem


def assert_read_answered(response: service.Response) -> str:
    """A read of results during a storage fault: 200, or 503 `database-unavailable`
    (the audit row cannot be written, so the read is refused)."""
    if response.status == 200:
        return "200"
    assert_unavailable(response, "database-unavailable")
    return "503 database-unavailable"


def upload_acknowledged(response: service.Response) -> bool:
    return response.status in (200, 202)


# --------------------------------------------------------------------------
# The database, checked after a graceful stop on a copy


def check_database(data_dir: Path, work: Path, acknowledged: dict[str, str], refused: set[str]) -> None:
    copy = work / f"db-copy-{time.monotonic_ns()}"
    copy.mkdir()
    for suffix in ("", "-wal"):
        source = data_dir / f"ich.sqlite{suffix}"
        if source.exists():
            shutil.copyfile(source, copy / source.name)
    db = sqlite3.connect(copy / "ich.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        columns = ", ".join(f"p_{label}" for label in LABELS)
        rows = {row[0]: row for row in db.execute(
            f"SELECT sop_instance_uid, study_instance_uid, state, spool_name, processed_at, model, {columns} "
            "FROM instances")}
        queued = [sop for sop, row in rows.items() if row[2] == 0]
        assert not queued, f"{len(queued)} instance(s) left queued: {queued}"
        for sop, study in acknowledged.items():
            assert sop in rows, f"acknowledged instance {sop} has no row (lost)"
            row = rows[sop]
            assert row[1] == study and row[2] == 1, f"acknowledged instance {sop}: {row}"
        for sop, row in rows.items():
            if row[2] == 1:
                probabilities = row[6:]
                assert row[3] is None and row[4] is not None and row[5], f"incomplete result: {row}"
                assert all(p is not None and 0.0 <= p <= 1.0 for p in probabilities), f"half-written result: {row}"
        kept = refused & set(rows)
        assert not kept, f"refused uploads were kept: {kept}"
        for study, received, done, failed in db.execute("SELECT study_instance_uid, received, done, failed FROM studies"):
            states = [row[2] for row in rows.values() if row[1] == study]
            assert (received, done, failed) == (len(states), states.count(1), states.count(2)), \
                f"study {study}: counters {(received, done, failed)}, instances {states}"
    finally:
        db.close()


def assert_spool_and_tmp_empty(data_dir: Path) -> None:
    assert sorted(os.listdir(data_dir / "spool")) == [], "spool files left"
    assert sorted(os.listdir(data_dir / "tmp")) == [], "request body files left"


# --------------------------------------------------------------------------
# Runs that are expected to end by themselves


@dataclass
class Run:
    returncode: int
    stdout: list[str]
    stderr: list[str]
    port: int | None
    readyz: list[service.Response] = field(default_factory=list)
    healthz: list[service.Response] = field(default_factory=list)
    during_load: object = None

    @property
    def output(self) -> str:
        return "\n".join(["stdout:", *self.stdout, "stderr:", *self.stderr])

    def messages(self) -> list[str]:
        """The problem the server reports: each `Error: ...` line and each error or
        critical log line (its `detail=` value when it has one)."""
        found = []
        for line in self.stderr:
            if line.startswith("Error: "):
                found.append(line[len("Error: "):].strip())
                continue
            match = LOG_LINE.match(line)
            if match and match.group(1) in ("error", "critical"):
                detail = re.search(r"detail=(.*) \[\w+\] ", match.group(2))
                found.append(detail.group(1) if detail else match.group(2))
        return found


def run_until_exit(data_dir: Path, model: Path, *, during_load=None, timeout: float = EXIT_TIMEOUT) -> Run:
    """`ich-server serve` that should fail: probes /readyz and /healthz from the
    moment it listens until it exits; `during_load(port)` runs first if given."""
    command = [str(service.server_binary()), "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir),
               "--model", str(model), "--threads", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
                               cwd=str(REPO_ROOT))
    stdout: list[str] = []
    stderr: list[str] = []
    listening = threading.Event()
    port: list[int | None] = [None]
    run = Run(0, stdout, stderr, None)

    def pump(stream, lines, watch):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            match = service.LISTENING.search(line) if watch else None
            if match and not listening.is_set():
                port[0] = int(match.group(2))
                listening.set()
        stream.close()

    def probe():
        while not listening.wait(0.005):
            if process.poll() is not None:
                return
        client = service.Client("127.0.0.1", port[0], validate=False)
        if during_load is not None:
            try:
                run.during_load = during_load(port[0])
            except (OSError, AssertionError) as error:
                run.during_load = error
        while process.poll() is None:
            for target, sink in (("/readyz", run.readyz), ("/healthz", run.healthz)):
                try:
                    sink.append(client.get(target, token=None, timeout=5))
                except (OSError, AssertionError):
                    pass
            time.sleep(0.01)

    threads = [threading.Thread(target=pump, args=(process.stdout, stdout, True), daemon=True),
               threading.Thread(target=pump, args=(process.stderr, stderr, False), daemon=True),
               threading.Thread(target=probe, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(30)
        pytest.fail(f"ich-server did not exit within {timeout} s:\n" + "\n".join(stdout + stderr)[-4000:])
    for thread in threads:
        thread.join(15)
    run.returncode = process.returncode
    run.port = port[0]
    return run


def assert_clear_failure(run: Run, *needles: str) -> str:
    """Exit status 1, no crash output, nothing on stderr but log lines and
    `Error:` lines, one problem message naming the needles; /readyz never ready."""
    print(f"exit {run.returncode}; listened: {run.port is not None}; /readyz answers "
          f"{[(r.status, r.body.decode()) for r in run.readyz][:3]} ({len(run.readyz)}), "
          f"/healthz {sorted({r.status for r in run.healthz})} ({len(run.healthz)})\n{run.output}")
    assert run.returncode == 1, f"exit status {run.returncode}, expected 1\n{run.output}"
    assert not CRASH.search(run.output), f"crash output\n{run.output}"
    noise = [line for line in run.stderr if line.strip() and not line.startswith("Error: ") and not LOG_LINE.match(line)]
    assert not noise, f"stderr holds more than log lines and the error: {noise}\n{run.output}"
    messages = run.messages()
    assert messages, f"no error line\n{run.output}"
    assert len(set(messages)) == 1, f"more than one problem reported: {messages}"
    message = messages[0]
    for needle in needles:
        assert needle.lower() in message.lower(), f"{needle!r} not in the message {message!r}"
    for response in run.readyz:
        assert response.status == 503, f"/readyz answered {response!r} while the model could not load"
        body = response.json()
        assert body["status"] == "not-ready" and body["checks"]["model"] is False, body
    for response in run.healthz:
        assert response.status == 200, repr(response)
    return message


# --------------------------------------------------------------------------
# 1. Bad model bundles


def safetensors_header(raw: bytes) -> tuple[int, dict]:
    (length,) = struct.unpack("<Q", raw[:8])
    return 8 + length, json.loads(raw[8 : 8 + length])


class Bundles:
    """Broken copies of the test bundle, made once per module (large files are
    linked, not copied, where the case does not change them)."""

    CASES = {
        # name: (needles in the message)
        "model-directory-missing": ("model.json", "no such file"),
        "model-json-missing": ("model.json", "no such file"),
        "model-json-not-json": ("model.json", "not valid JSON"),
        "model-json-field-missing": ("model.json", "'weights' is missing"),
        "weights-missing": ("weights.safetensors", "no such file"),
        "weights-truncated": ("weights.safetensors", "sha256"),
        "weights-truncated-checksum-updated": ("safetensors", "outside"),
        "weights-byte-changed": ("weights.safetensors", "sha256"),
        "golden-missing": ("golden.safetensors", "no such file"),
        "golden-mismatch": ("golden vector", "refused"),
    }

    def __init__(self, good: Path, root: Path):
        self.good = good
        self.root = root
        self.made: dict[str, Path] = {}
        self.manifest = json.loads((good / "model.json").read_text())

    def link(self, out: Path, *names: str) -> None:
        for name in names:
            (out / name).symlink_to(self.good / name)

    def __call__(self, case: str) -> Path:
        if case in self.made:
            return self.made[case]
        out = self.root / case
        if case == "model-directory-missing":
            self.made[case] = out
            return out
        out.mkdir(parents=True)
        manifest = json.loads(json.dumps(self.manifest))
        weights = self.good / "weights.safetensors"
        if case == "model-json-missing":
            self.link(out, "weights.safetensors", "golden.safetensors")
        elif case == "model-json-not-json":
            (out / "model.json").write_text((self.good / "model.json").read_text()[:200])
            self.link(out, "weights.safetensors", "golden.safetensors")
        elif case == "model-json-field-missing":
            del manifest["weights"]
            (out / "model.json").write_text(json.dumps(manifest))
            self.link(out, "weights.safetensors", "golden.safetensors")
        elif case == "weights-missing":
            self.link(out, "model.json", "golden.safetensors")
        elif case in ("weights-truncated", "weights-truncated-checksum-updated"):
            size = weights.stat().st_size
            with open(weights, "rb") as source, open(out / "weights.safetensors", "wb") as target:
                target.write(source.read(size // 2))
            if case == "weights-truncated":
                self.link(out, "model.json", "golden.safetensors")
            else:
                manifest["weights"]["sha256"] = hashlib.sha256((out / "weights.safetensors").read_bytes()).hexdigest()
                (out / "model.json").write_text(json.dumps(manifest))
                self.link(out, "golden.safetensors")
        elif case == "weights-byte-changed":
            shutil.copyfile(weights, out / "weights.safetensors")
            offset = weights.stat().st_size // 2
            with open(out / "weights.safetensors", "r+b") as handle:
                handle.seek(offset)
                byte = handle.read(1)
                handle.seek(offset)
                handle.write(bytes([byte[0] ^ 0x01]))
            self.link(out, "model.json", "golden.safetensors")
        elif case == "golden-missing":
            self.link(out, "model.json", "weights.safetensors")
        elif case == "golden-mismatch":
            raw = (self.good / "golden.safetensors").read_bytes()
            base, header = safetensors_header(raw)
            start, end = (base + offset for offset in header["outputs"]["data_offsets"])
            values = struct.unpack(f"<{(end - start) // 4}f", raw[start:end])
            flipped = struct.pack(f"<{len(values)}f", *(1.0 - v for v in values))  # p -> 1 - p: far off
            (out / "golden.safetensors").write_bytes(raw[:start] + flipped + raw[end:])
            self.link(out, "model.json", "weights.safetensors")
        else:
            raise KeyError(case)
        self.made[case] = out
        return out


@pytest.fixture(scope="module")
def bundles(bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    yield Bundles(bundle, root)
    shutil.rmtree(root, ignore_errors=True)  # up to 170 MB of weights copies


@pytest.mark.parametrize("case", list(Bundles.CASES))
def test_bad_bundle_exits_with_one_clear_message(case, bundles, tmp_path):
    model = bundles(case)
    run = run_until_exit(tmp_path / "data", model)
    message = assert_clear_failure(run, *Bundles.CASES[case])
    if case == "weights-byte-changed":
        assert bundles.manifest["weights"]["sha256"] in message, message


def test_model_load_failure_is_logged_once(bundles, tmp_path):
    run = run_until_exit(tmp_path / "data", bundles("weights-byte-changed"))
    assert run.returncode == 1
    assert len(run.messages()) == 1, run.output


def test_upload_during_a_failed_load_is_kept_for_the_next_start(bundles, bundle, rig, tmp_path):
    """Uploads are accepted while the model loads. When the load then fails
    (golden vectors, about 0.5 s after listening), an acknowledged upload must
    survive the exit and get its result from the next start with a good bundle."""
    data = tmp_path / "data"
    srv = rig.server(data, bundle, args=["--max-batch", "4", "--max-delay-ms", "5", "--threads", "2"])
    token = srv.token("admin")
    slice_ = make_study(1, seed=11)[0]

    def upload(port):
        return service.Client("127.0.0.1", port, token, validate=False).post_instance(slice_.data, timeout=30)

    run = run_until_exit(data, bundles("golden-mismatch"), during_load=upload)
    assert_clear_failure(run, "golden vector")
    answer = run.during_load
    if not isinstance(answer, service.Response) or not upload_acknowledged(answer):
        pytest.skip(f"the load failed before the upload was acknowledged ({answer!r}); nothing to check")
    srv.start()
    instance = srv.client(token).wait_instance_done(slice_.sop, timeout=60)
    assert instance["status"] == "done", instance
    assert srv.stop() == 0
    assert_spool_and_tmp_empty(data)
    check_database(data, tmp_path, {slice_.sop: slice_.study}, set())


# --------------------------------------------------------------------------
# 2. The data directory or the database cannot be used at start-up


@pytest.mark.parametrize("case", ["data-dir-is-a-file", "database-is-garbage", "database-is-a-directory"])
def test_unusable_data_directory_exits_with_one_clear_message(case, bundle, tmp_path):
    data = tmp_path / "data"
    garbage = b"this is not an SQLite database\n" * 64
    if case == "data-dir-is-a-file":
        data.write_text("a regular file\n")
        needles = ("cannot create or open the directory", str(data))
    elif case == "database-is-garbage":
        data.mkdir()
        (data / "ich.sqlite").write_bytes(garbage)
        needles = ("sqlite", "not a database")
    else:
        (data / "ich.sqlite").mkdir(parents=True)
        needles = ("cannot create or open the file", "ich.sqlite")
    run = run_until_exit(data, bundle)
    assert_clear_failure(run, *needles)
    assert run.port is None, "the server listened with an unusable data directory"
    if case == "database-is-garbage":
        assert (data / "ich.sqlite").read_bytes() == garbage, "the unreadable database was changed"


@pytest.mark.parametrize("case", ["empty-read-only-mount", "existing-data-directory-remounted-read-only"])
def test_read_only_data_directory_at_start_up(case, bundle, rig, tmp_path):
    point = tmp_path / "fs"
    if case == "empty-read-only-mount":
        rig.mount("-t", "tmpfs", "-o", "size=3m,ro", "tmpfs", point=point, what="a read-only tmpfs")
        data = point / "data"
        needles = ("cannot create or open the directory", str(data))
    else:
        rig.tmpfs(point)
        data = point / "data"
        srv = rig.server(data, bundle)
        srv.token("admin")  # database, migrations, a token
        for name in ("spool", "tmp"):
            (data / name).mkdir(mode=0o700)
        rig.remount(point, "ro")
        needles = ("cannot create or open the file", str(data / "ich.sqlite"))
    run = run_until_exit(data, bundle)
    assert_clear_failure(run, *needles)
    assert run.port is None


def test_disk_full_at_start_up(bundle, rig, tmp_path):
    """An existing data directory on a full file system (filled while the server was down)."""
    point = rig.tmpfs(tmp_path / "fs")
    data = point / "data"
    srv = rig.server(data, bundle)
    token = srv.token("admin")
    filler = fill(point)
    run = run_until_exit(data, bundle)
    assert_clear_failure(run, "sqlite", "disk")
    assert run.port is None
    # Nothing was damaged: once there is room the same directory starts and serves.
    filler.unlink()
    srv.start()
    assert srv.client(token).get("/v1/studies").status == 200
    assert srv.stop() == 0
    check_database(data, tmp_path, {}, set())


# --------------------------------------------------------------------------
# 3. Disk full at run time


def test_disk_full_at_run_time(bundle, rig, tmp_path):
    point = rig.tmpfs(tmp_path / "fs")
    data = point / "data"
    # A batch of 4 runs at once; fewer slices wait 4 s for company.
    srv = rig.server(data, bundle, args=["--max-batch", "4", "--max-delay-ms", "4000", "--threads", "2",
                                         "--stable-age", "1"])
    token = srv.token("admin")
    srv.start()
    client = srv.client(token)
    acknowledged: dict[str, str] = {}
    refused: set[str] = set()
    reads: list[str] = []

    study_a = make_study(4, seed=61)
    assert client.stow([f.data for f in study_a]).status == 200
    acknowledged.update((f.sop, f.study) for f in study_a)
    for f in study_a:
        assert client.wait_instance_done(f.sop, timeout=60)["status"] == "done"

    # (a) Full, nothing queued: uploads refused, service alive.
    filler = fill(point)
    spool_before = set(os.listdir(data / "spool"))
    refused |= assert_uploads_refused_while_alive(client, seed=62)
    reads.append(assert_read_answered(client.get(f"/v1/studies/{study_a[0].study}")))

    # (b) Room for the spool file (3 pages) but not for the commit: refused, and the file is gone.
    free_bytes(filler, 3 * 4096)
    tight = make_study(1, seed=64)[0]
    assert_unavailable(client.post_instance(tight.data), "storage-unavailable")
    refused.add(tight.sop)
    assert set(os.listdir(data / "spool")) == spool_before, "a refused upload left a spool file"
    assert os.listdir(data / "tmp") == []
    filler.unlink()

    # (c) Acknowledged uploads whose results cannot be stored: the server is
    # frozen (SIGSTOP) while the disk fills, before their batch's 4 s are up.
    study_b = make_study(3, seed=65)
    for f in study_b:
        response = client.post_instance(f.data)
        assert response.status == 202, repr(response)
        acknowledged[f.sop] = f.study
    srv.process.send_signal(signal.SIGSTOP)
    try:
        filler = fill(point)
    finally:
        srv.process.send_signal(signal.SIGCONT)
    wait_for_log(srv, "storing results failed", 60)
    late = make_study(1, seed=66)[0]
    assert_unavailable(client.post_instance(late.data), "storage-unavailable")
    refused.add(late.sop)
    assert client.get("/healthz", token=None).status == 200
    reads.append(assert_read_answered(client.get(f"/v1/instances/{study_b[0].sop}")))
    print(f"reads while the disk was full: {reads}")

    # (d) Space freed: every acknowledged instance gets its result, uploads work again, no restart.
    filler.unlink()
    for sop in acknowledged:
        assert client.wait_instance_done(sop, timeout=60)["status"] == "done", sop
    study_c = make_study(3, seed=67)
    assert client.post_instance(study_c[0].data).status == 202
    assert client.stow([f.data for f in study_c[1:]]).status == 200
    acknowledged.update((f.sop, f.study) for f in study_c)
    for f in study_c:
        assert client.wait_instance_done(f.sop, timeout=60)["status"] == "done"
    for sop in refused:
        assert_problem(client.get(f"/v1/instances/{sop}"), 404, "instance-not-found")
    assert srv.stop() == 0
    assert_spool_and_tmp_empty(data)
    check_database(data, tmp_path, acknowledged, refused)


@pytest.fixture
def full_disk_server(bundle, rig, tmp_path):
    """A ready server whose data directory's file system is full; one upload refused."""
    point = rig.tmpfs(tmp_path / "fs")
    srv = rig.server(point / "data", bundle, args=["--threads", "2"])
    token = srv.token("admin")
    srv.start()
    fill(point)
    client = srv.client(token)
    assert_unavailable(client.post_instance(make_study(1, seed=71)[0].data), "storage-unavailable")
    return srv, client


def test_disk_full_log_names_the_cause(full_disk_server):
    srv, _ = full_disk_server
    errors = [line for line in srv.log_text().splitlines() if " error ich-server: " in line]
    assert errors, srv.log_tail()
    assert any(re.search(r"no space left|disk is full|ENOSPC|SQLITE_FULL", line, re.I) for line in errors), errors


def test_readyz_not_ready_when_the_disk_is_full(full_disk_server):
    _, client = full_disk_server
    response = client.get("/readyz", token=None)
    assert response.status == 503, repr(response)


def frozen_batch_on_full_disk(bundle, rig, tmp_path):
    """Three acknowledged uploads whose batch cannot store its results (disk full)."""
    point = rig.tmpfs(tmp_path / "fs")
    srv = rig.server(point / "data", bundle, args=["--max-batch", "4", "--max-delay-ms", "4000", "--threads", "2"])
    token = srv.token("admin")
    srv.start()
    client = srv.client(token)
    files = make_study(3, seed=81)
    for f in files:
        assert client.post_instance(f.data).status == 202
    srv.process.send_signal(signal.SIGSTOP)
    try:
        filler = fill(point)
    finally:
        srv.process.send_signal(signal.SIGCONT)
    wait_for_log(srv, "storing results failed", 60)
    return srv, client, files, filler


@pytest.mark.skipif(not LONG, reason="holds the disk full for about 90 s; set ICH_FAULTS_LONG=1")
def test_results_are_stored_after_an_outage_longer_than_the_retries(bundle, rig, tmp_path):
    srv, client, files, filler = frozen_batch_on_full_disk(bundle, rig, tmp_path)
    time.sleep(90)  # longer than the 40 attempts (about 82 s) after which earlier builds gave up
    filler.unlink()
    fresh = make_study(1, seed=82)[0]
    assert client.post_instance(fresh.data).status == 202
    assert client.wait_instance_done(fresh.sop, timeout=60)["status"] == "done"
    for f in files:
        assert client.wait_instance_done(f.sop, timeout=20)["status"] == "done", f.sop


@pytest.mark.skipif(not LONG, reason="takes about 90 s; set ICH_FAULTS_LONG=1")
def test_sigterm_during_a_storage_outage_exits_promptly(bundle, rig, tmp_path):
    srv, _, _, _ = frozen_batch_on_full_disk(bundle, rig, tmp_path)
    started = time.monotonic()
    code = srv.stop(timeout=150)
    elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < 30, f"exit took {elapsed:.0f} s"


# --------------------------------------------------------------------------
# 4. Read-only file system and locked database at run time


@dataclass
class Ext4:
    image: Path
    point: Path
    device: str


def mount_ext4(rig: Rig, tmp_path: Path) -> Ext4:
    """A 32 MiB ext4 image on a loop device, errors=remount-ro: the kernel makes
    it read-only on a file system error, as it does on a failing disk."""
    rig.require_root()
    if not shutil.which("mkfs.ext4"):
        pytest.skip("mkfs.ext4 not found")
    image = tmp_path / "ext4.img"
    with open(image, "wb") as handle:
        handle.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True, timeout=60)
    point = rig.mount("-o", "loop,errors=remount-ro", str(image), point=tmp_path / "ext4", what="an ext4 loop device")
    source = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(point)], capture_output=True, text=True).stdout.strip()
    device = Path(source).name
    if not Path(f"/sys/fs/ext4/{device}/trigger_fs_error").exists():
        pytest.skip(f"/sys/fs/ext4/{device}/trigger_fs_error not available")
    return Ext4(image, point, device)


def make_read_only(fs: Ext4) -> None:
    Path(f"/sys/fs/ext4/{fs.device}/trigger_fs_error").write_text("ich-server fault test\n")
    options = subprocess.run(["findmnt", "-n", "-o", "OPTIONS", str(fs.point)], capture_output=True, text=True).stdout
    probe = fs.point / "probe"
    try:
        probe.write_bytes(b"x")
    except OSError as error:
        assert error.errno == errno.EROFS, error
    else:
        pytest.skip(f"the file system is still writable after trigger_fs_error (options {options.strip()})")


def assert_uploads_refused_while_alive(client, seed: int) -> set[str]:
    """A single upload and a 2-part STOW both get 503 storage-unavailable while
    /healthz and /metrics answer; returns the refused SOP Instance UIDs."""
    single = make_study(1, seed=seed)[0]
    assert_unavailable(client.post_instance(single.data), "storage-unavailable")
    parts = make_study(2, seed=seed + 1)
    assert_unavailable(client.stow([p.data for p in parts]), "storage-unavailable")
    assert client.get("/healthz", token=None).status == 200
    assert client.get("/metrics").status == 200
    return {single.sop} | {p.sop for p in parts}


def serve_one_done_study(rig, data: Path, bundle: Path, *, stable_age: str, seed: int, args=(),
                         env: dict[str, str] | None = None):
    """A started server with one 4-slice study stored and processed: (server, client, admin token, acknowledged).
    `args` come after (and so override) the defaults."""
    srv = rig.server(data, bundle, args=["--max-batch", "4", "--max-delay-ms", "5", "--threads", "2",
                                         "--stable-age", stable_age, *args], env=env)
    token = srv.token("admin")
    srv.start()
    client = srv.client(token)
    study = make_study(4, seed=seed)
    assert client.stow([f.data for f in study]).status == 200
    for f in study:
        assert client.wait_instance_done(f.sop, timeout=60)["status"] == "done"
    return srv, client, token, {f.sop: f.study for f in study}


def test_read_only_file_system_at_run_time(bundle, rig, tmp_path):
    """tmpfs cannot be remounted read-only under the running server (`mount -o
    remount,ro` fails with EBUSY: SQLite holds files open for writing). An ext4
    error forces it, as a failing disk does; recovery needs unmount, fsck and a
    restart of the server."""
    fs = mount_ext4(rig, tmp_path)
    data = fs.point / "data"
    srv, client, token, acknowledged = serve_one_done_study(rig, data, bundle, stable_age="1", seed=91)
    first_study = next(iter(acknowledged.values()))
    refused: set[str] = set()

    make_read_only(fs)
    refused |= assert_uploads_refused_while_alive(client, seed=92)
    read = assert_read_answered(client.get(f"/v1/studies/{first_study}"))
    readyz = client.get("/readyz", token=None)
    print(f"read while read-only: {read}; /readyz {readyz.status} {readyz.body.decode()}")
    assert srv.stop() == 0

    # The operator's repair: unmount, fsck, mount; the same data directory starts and serves.
    rig.umount(fs.point)
    fsck = subprocess.run(["e2fsck", "-fy", str(fs.image)], capture_output=True, text=True, timeout=120)
    assert fsck.returncode in (0, 1), f"e2fsck: {fsck.returncode}\n{fsck.stdout}{fsck.stderr}"
    rig.mount("-o", "loop,errors=remount-ro", str(fs.image), point=fs.point, what="the repaired ext4 image")
    srv.start()
    client = srv.client(token)
    for sop in acknowledged:
        assert client.wait_instance_done(sop, timeout=60)["status"] == "done"
    after = make_study(2, seed=94)
    assert client.stow([f.data for f in after]).status == 200
    acknowledged.update((f.sop, f.study) for f in after)
    for f in after:
        assert client.wait_instance_done(f.sop, timeout=60)["status"] == "done"
    for sop in refused:
        assert_problem(client.get(f"/v1/instances/{sop}"), 404, "instance-not-found")
    assert srv.stop() == 0
    assert_spool_and_tmp_empty(data)
    check_database(data, tmp_path, acknowledged, refused)


def test_readyz_not_ready_when_the_file_system_is_read_only(bundle, rig, tmp_path):
    fs = mount_ext4(rig, tmp_path)
    srv = rig.server(fs.point / "data", bundle, args=["--threads", "2"])
    token = srv.token("admin")
    srv.start()
    make_read_only(fs)
    client = srv.client(token)
    assert_unavailable(client.post_instance(make_study(1, seed=95)[0].data), "storage-unavailable")
    response = client.get("/readyz", token=None)
    assert response.status == 503, repr(response)
    assert response.json()["checks"]["storage"] is False, response.json()


@pytest.fixture
def locked_database():
    """Holds an exclusive lock (BEGIN EXCLUSIVE from another process's view: a
    backup tool or an sqlite3 shell) on a database until released."""
    held: list[sqlite3.Connection] = []

    def lock(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, timeout=10)
        db.execute("BEGIN EXCLUSIVE")
        held.append(db)
        return db

    yield lock
    for db in held:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        db.close()


def test_locked_database_at_run_time(bundle, rig, tmp_path, locked_database):
    """The database cannot be written (another process holds it; SQLite's busy
    timeout is 5 s): uploads 503, /readyz not ready, and recovery without a
    restart once the lock is released."""
    data = tmp_path / "data"
    # --stable-age 600: no study settles during the test, so the notifier does not
    # queue its own 5 s waits on the writer in front of the requests.
    srv, client, _, acknowledged = serve_one_done_study(rig, data, bundle, stable_age="600", seed=101)
    first_study = next(iter(acknowledged.values()))
    refused: set[str] = set()

    lock = locked_database(data / "ich.sqlite")
    single = make_study(1, seed=102)[0]
    assert_unavailable(client.post_instance(single.data), "storage-unavailable")
    refused.add(single.sop)
    assert os.listdir(data / "spool") == [], "a refused upload left a spool file"
    readyz = client.get("/readyz", token=None)
    assert readyz.status == 503, repr(readyz)
    assert readyz.json()["checks"] == {"model": True, "database": False, "storage": True, "queue": True}, readyz.json()
    read = assert_read_answered(client.get(f"/v1/studies/{first_study}"))
    assert client.get("/healthz", token=None).status == 200
    print(f"read while locked: {read}")
    lock.execute("ROLLBACK")
    lock.close()

    # Released: ready again and serving, same process.
    deadline = time.monotonic() + 30
    while (readyz := client.get("/readyz", token=None)).status != 200:
        assert time.monotonic() < deadline, f"/readyz not 200 after the lock was released: {readyz!r}"
        time.sleep(0.2)
    assert client.get(f"/v1/studies/{first_study}").status == 200
    after = make_study(2, seed=103)
    for f in after:
        assert client.post_instance(f.data).status == 202
        acknowledged[f.sop] = f.study
    for f in after:
        assert client.wait_instance_done(f.sop, timeout=60)["status"] == "done"
    assert_problem(client.get(f"/v1/instances/{single.sop}"), 404, "instance-not-found")
    assert srv.stop() == 0
    assert_spool_and_tmp_empty(data)
    check_database(data, tmp_path, acknowledged, refused)


def test_healthz_answers_while_readiness_probes_wait_on_a_locked_database(bundle, rig, tmp_path, locked_database):
    data = tmp_path / "data"
    srv = rig.server(data, bundle, args=["--threads", "2"])
    srv.token("admin")
    srv.start()
    client = srv.client(validate=False)
    lock = locked_database(data / "ich.sqlite")
    probes = [threading.Thread(target=lambda: client.get("/readyz", token=None, timeout=120), daemon=True)
              for _ in range((os.cpu_count() or 2) + 2)]
    for probe in probes:
        probe.start()
    time.sleep(0.5)
    try:
        answer = client.get("/healthz", token=None, timeout=3)
    except socket.timeout:
        answer = None
    finally:
        lock.execute("ROLLBACK")
    for probe in probes:
        probe.join(120)
    assert answer is not None and answer.status == 200, "GET /healthz got no answer within 3 s"
