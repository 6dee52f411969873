"""Faults of issue 6 against the real `ich-server`: bad model bundles, an
unusable data directory or database at start-up, a full disk (also under
concurrent load), a read-only file system, a locked database and EIO from a
failing disk at run time.

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

EIO is injected in user space (the test kernel has no device-mapper for
dm-flakey): Tests/python/faults/eio_shim.c, an LD_PRELOAD library the tests
build with `cc` (they skip without a C compiler), makes writes, syncs (and
on request reads) fail with EIO on chosen paths while a control file exists.
These tests need no root. See section 5 for what the shim can and cannot
stand in for.

    ICH_SERVER=.build/release/ich-server .venv/bin/pytest -q -rsxX Tests/python/test_faults.py
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

    def server(self, data_dir: Path, model: Path, args=(), name: str = "server",
               env: dict[str, str] | None = None) -> Server:
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


def write_until_full(fd: int, chunk_sizes: tuple[int, ...]) -> None:
    """Appends zeros to `fd` in chunks of each size in turn, each until ENOSPC."""
    for size in chunk_sizes:
        chunk = b"\0" * size
        try:
            while True:
                os.write(fd, chunk)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise


def fill(directory: Path) -> Path:
    """Writes `directory`/filler until the file system is full; returns its path."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        write_until_full(fd, (65536, 4096, 1))
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


def post_acknowledged(client, acknowledged: dict[str, str], count: int, seed: int) -> list:
    """`count` new slices of one study, each posted alone and answered 202; recorded in `acknowledged`."""
    files = make_study(count, seed=seed)
    for f in files:
        response = client.post_instance(f.data)
        assert response.status == 202, repr(response)
        acknowledged[f.sop] = f.study
    return files


def uploads_work_again_and_nothing_is_lost(srv, client, data: Path, work: Path, acknowledged: dict[str, str],
                                          refused: set[str], seed: int) -> None:
    """After a fault clears: a single upload and a STOW are stored and processed, the refused uploads do not
    exist, the server stops cleanly, nothing is left in spool/ or tmp/, and the database holds exactly the
    acknowledged instances."""
    after = make_study(3, seed=seed)
    assert client.post_instance(after[0].data).status == 202
    assert client.stow([f.data for f in after[1:]]).status == 200
    acknowledged.update((f.sop, f.study) for f in after)
    for f in after:
        assert client.wait_instance_done(f.sop, timeout=60)["status"] == "done"
    for sop in refused:
        assert_problem(client.get(f"/v1/instances/{sop}"), 404, "instance-not-found")
    assert srv.stop() == 0
    assert_spool_and_tmp_empty(data)
    check_database(data, work, acknowledged, refused)


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
    study_b = post_acknowledged(client, acknowledged, 3, seed=65)
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
    uploads_work_again_and_nothing_is_lost(srv, client, data, tmp_path, acknowledged, refused, seed=67)


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
    uploads_work_again_and_nothing_is_lost(srv, client, data, tmp_path, acknowledged, refused, seed=94)


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
    after = post_acknowledged(client, acknowledged, 2, seed=103)
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


# --------------------------------------------------------------------------
# 5. EIO from a failing disk, injected in user space
#
# The kernel of the test machine has no device-mapper (no dm-flakey, no
# dm-error), so a failing disk is simulated by an LD_PRELOAD library,
# Tests/python/faults/eio_shim.c, built by the tests with `cc`: while its
# control file exists, write/pwrite*/writev/ftruncate/fallocate/fsync/
# fdatasync (all, or the calls the control file names) fail with EIO on
# descriptors whose path starts with one of the prefixes it names. The server
# calls write and fsync itself (spool, request bodies, readiness probe);
# SQLite (the system libsqlite3, dynamically linked) calls pwrite64,
# fdatasync and ftruncate on ich.sqlite and its -wal. -shm is mapped memory:
# its writes cannot fail this way.
#
# Unlike a real disk error the page cache is untouched ("fsyncgate": after a
# failed fsync Linux may drop the dirty pages or mark them clean, and a later
# fsync may succeed without having written them). A failed call here writes
# nothing and a later one works normally, so these tests check the server's
# error paths (what it answers, logs, keeps and retries), not what the kernel
# does with its cache.

SHIM_SOURCE = Path(__file__).resolve().parent / "faults" / "eio_shim.c"
PATIENT_NAME = "Phantom"  # make_study's PatientName is "Synthetic^Phantom"


@pytest.fixture(scope="module")
def eio_library(tmp_path_factory) -> Path:
    names = [os.environ.get("CC"), "cc", "gcc", "clang"]
    compiler = next((found for name in names if name and (found := shutil.which(name))), None)
    if compiler is None:
        pytest.skip("no C compiler (cc, gcc or clang) to build Tests/python/faults/eio_shim.c")
    library = tmp_path_factory.mktemp("eio-shim") / "eio_shim.so"
    result = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(SHIM_SOURCE), "-ldl",
                             "-lpthread"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{compiler} could not build {SHIM_SOURCE.name}:\n{result.stderr}"
    return library


class EIOShim:
    """The shim's switch for one test: `env()` for the server, `on(...)` and `off()` under it."""

    def __init__(self, library: Path, work: Path):
        self.library = library
        self.control = work / "eio.control"
        self.log = work / "eio.log"

    def env(self) -> dict[str, str]:
        return {"LD_PRELOAD": str(self.library), "EIO_SHIM_CONTROL": str(self.control), "EIO_SHIM_LOG": str(self.log)}

    def on(self, *prefixes: str, calls: tuple[str, ...] = (), count: int | None = None) -> None:
        """EIO for `calls` (default: all) on paths starting with a prefix; a prefix
        ending in '/' is a directory and covers the directory itself too."""
        assert prefixes, "name the paths the fault covers"
        words = [os.path.realpath(p) + ("/" if p.endswith("/") else "") for p in prefixes] + list(calls)
        if count is not None:
            words.append(f"count={count}")
        staging = self.control.with_name(self.control.name + ".new")
        staging.write_text(" ".join(words) + "\n")
        os.replace(staging, self.control)  # a new file: the shim rereads it on the next call

    def off(self) -> None:
        self.control.unlink(missing_ok=True)

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def injected(self) -> list[tuple[str, str]]:
        """(call, path) for each error injected so far."""
        return [tuple(line.split(" ", 1)) for line in self.lines() if not line.startswith("loaded ")]

    def require_loaded(self, srv: Server) -> None:
        if f"loaded {srv.process.pid}" not in self.lines():
            pytest.skip(f"the server did not load the LD_PRELOAD shim (a static binary?); shim log: {self.lines()}")


@pytest.fixture
def eio(eio_library, tmp_path):
    shim = EIOShim(eio_library, tmp_path)
    yield shim
    shim.off()


def assert_no_request_data(response: service.Response, files, data_dir: Path) -> None:
    """No UID, patient name, path or stack trace of the request in a response."""
    text = response.body.decode("utf-8", "replace") + "".join(value for _, value in response.headers)
    for f in files:
        assert f.sop not in text and f.study not in text, f"a UID of the request in the response: {text}"
    assert PATIENT_NAME not in text and str(data_dir) not in text and not CRASH.search(text), text


def refused_without_request_data(client, seed: int, data_dir: Path) -> set[str]:
    """`assert_uploads_refused_while_alive`, checking the responses for request data too."""
    single = make_study(1, seed=seed)[0]
    parts = make_study(2, seed=seed + 1)
    answers = ((client.post_instance(single.data), [single]), (client.stow([p.data for p in parts]), parts))
    for response, files in answers:
        assert_unavailable(response, "storage-unavailable")
        assert_no_request_data(response, files, data_dir)
    assert client.get("/healthz", token=None).status == 200
    assert client.get("/metrics").status == 200
    return {single.sop} | {p.sop for p in parts}


def error_lines(srv: Server) -> list[str]:
    return [line for line in srv.log_text().splitlines()
            if (match := LOG_LINE.match(line)) and match.group(1) in ("error", "critical")]


def assert_log_clean(srv: Server, uids) -> None:
    """No crash output or stack trace, no UID of an upload in the server's log."""
    text = srv.log_text()
    assert not CRASH.search(text), f"crash output in the log:\n{srv.log_tail()}"
    leaked = [uid for uid in uids if uid in text]
    assert not leaked, f"UIDs in the server log: {leaked}"


@pytest.mark.parametrize("calls", ["fsync", "write"])
def test_eio_in_the_spool_refuses_uploads(calls, bundle, rig, tmp_path, eio):
    """EIO on the spool's write or fsync (the spool directory only): uploads get
    503 storage-unavailable with Retry-After and nothing is kept; /healthz
    answers; the log names the call and the error; after the fault the same
    process accepts and processes uploads."""
    data = tmp_path / "data"
    srv, client, _, acknowledged = serve_one_done_study(rig, data, bundle, stable_age="1", seed=111, env=eio.env())
    eio.require_loaded(srv)

    eio.on(f"{data}/spool/", calls=(calls,))
    refused = refused_without_request_data(client, 112, data)
    assert sorted(os.listdir(data / "spool")) == [], "a refused upload left a spool file"
    readyz = client.get("/readyz", token=None)
    hit = sorted({(call, Path(path).parent.name) for call, path in eio.injected()})
    print(f"injected: {hit}; /readyz during the fault {readyz.status} {readyz.body.decode()}")
    assert (calls, "spool") in hit, eio.injected()
    causes = [line for line in error_lines(srv) if "storing an upload failed" in line]
    assert causes and all(f"Spool {calls} failed: Input/output error" in line for line in causes), error_lines(srv)
    eio.off()

    uploads_work_again_and_nothing_is_lost(srv, client, data, tmp_path, acknowledged, refused, seed=114)
    assert_log_clean(srv, refused | set(acknowledged))


@pytest.mark.parametrize("calls", ["all", "fsync,fdatasync"])
def test_eio_on_the_database_while_results_are_committed(calls, bundle, rig, tmp_path, eio):
    """EIO on ich.sqlite and its -wal (every write and sync, or the syncs only, as
    when the disk fails on write-back) while a batch of acknowledged uploads
    waits for its forward pass: storing its results fails and is retried,
    uploads are refused, /healthz answers; once the fault clears the results
    are stored without a restart and nothing acknowledged is lost."""
    data = tmp_path / "data"
    # A batch of 4 runs at once; fewer slices wait 3 s for company.
    srv, client, _, acknowledged = serve_one_done_study(rig, data, bundle, stable_age="1", seed=121, env=eio.env(),
                                                        args=["--max-delay-ms", "3000"])
    eio.require_loaded(srv)
    waiting = post_acknowledged(client, acknowledged, 3, seed=122)
    eio.on(f"{data}/ich.sqlite", calls=tuple(calls.split(",")) if calls != "all" else ())
    wait_for_log(srv, "storing results failed", 30)
    first_failure = time.monotonic()

    late = make_study(1, seed=123)[0]
    response = client.post_instance(late.data)
    assert_unavailable(response, "storage-unavailable")
    assert_no_request_data(response, [late], data)
    # The refused upload's file stays until a later commit shows the failed one cannot come back from the WAL.
    assert len(os.listdir(data / "spool")) == len(waiting) + 1, \
        "a waiting upload's file is gone, or the refused one's was removed while its commit may still replay"
    assert client.get("/healthz", token=None).status == 200
    read = assert_read_answered(client.get(f"/v1/instances/{waiting[0].sop}"))
    readyz = client.get("/readyz", token=None)
    time.sleep(max(0.0, 2.0 - (time.monotonic() - first_failure)))  # a few retries (0.1 s, 0.2 s, ...)
    hit = sorted({(call, Path(path).name) for call, path in eio.injected()})
    stores = [line for line in error_lines(srv) if "storing results failed" in line]
    print(f"injected: {hit}\nread during the fault: {read}; /readyz {readyz.status} {readyz.body.decode()}\n"
          f"store failures logged: {stores[:2]}")
    assert stores and all("disk I/O error" in line for line in stores), stores
    eio.off()

    for f in waiting:
        assert client.wait_instance_done(f.sop, timeout=30)["status"] == "done", f.sop
    assert "results stored after retrying" in srv.log_text()
    after = make_study(2, seed=124)
    assert client.stow([f.data for f in after]).status == 200
    acknowledged.update((f.sop, f.study) for f in after)
    for f in after:
        assert client.wait_instance_done(f.sop, timeout=60)["status"] == "done"
    assert_problem(client.get(f"/v1/instances/{late.sop}"), 404, "instance-not-found")
    assert srv.stop() == 0
    assert_log_clean(srv, {late.sop, *acknowledged})
    assert_spool_and_tmp_empty(data)
    check_database(data, tmp_path, acknowledged, {late.sop})


@pytest.mark.parametrize("scope, calls", [
    pytest.param("data-dir", "all", id="data-dir-all"),
    pytest.param("data-dir", "fsync,fdatasync", id="data-dir-syncs"),
    pytest.param("database", "all", id="database-all"),
])
def test_readyz_not_ready_while_storage_gives_eio(scope, calls, bundle, rig, tmp_path, eio):
    """`data-dir`: the whole data directory fails (database, spool, tmp/ and the
    readiness probe's file in it), as when its disk fails; `all` fails every
    write and sync, `fsync,fdatasync` only the syncs, which is how a disk
    failing on write-back shows (the write lands in the page cache, the error
    comes with the fsync). `database`: only ich.sqlite and its -wal fail (bad
    blocks under the database). Every upload is refused in each case, so
    /readyz should say not ready."""
    data = tmp_path / "data"
    srv = rig.server(data, bundle, args=["--threads", "2", "--stable-age", "600"], env=eio.env())
    token = srv.token("admin")
    srv.start()
    eio.require_loaded(srv)
    client = srv.client(token)
    eio.on(f"{data}/" if scope == "data-dir" else f"{data}/ich.sqlite",
           calls=tuple(calls.split(",")) if calls != "all" else ())
    upload = make_study(1, seed=131)[0]
    assert_unavailable(client.post_instance(upload.data), "storage-unavailable")
    assert client.get("/healthz", token=None).status == 200
    readyz = client.get("/readyz", token=None)
    print(f"/readyz while {calls} fail in {scope}: {readyz.status} {readyz.body.decode()}; "
          f"injected {sorted({call for call, _ in eio.injected()})}")
    eio.off()
    deadline = time.monotonic() + 10
    while (after := client.get("/readyz", token=None)).status != 200:
        assert time.monotonic() < deadline, f"/readyz not 200 after the fault cleared: {after!r}"
        time.sleep(0.2)
    assert client.post_instance(upload.data).status == 202
    assert readyz.status == 503, f"/readyz said ready while every upload was refused: {readyz!r}"
    assert readyz.json()["checks"]["storage"] is False or readyz.json()["checks"]["database"] is False, readyz.json()


def test_upload_refused_on_a_failed_wal_sync_is_whole_after_a_crash(bundle, rig, tmp_path, eio):
    """The WAL's fdatasync fails while an upload's job row commits (the pages
    were written, the sync failed: a disk failing on write-back). The upload
    is refused; the server is then killed before anything else commits (a
    crash, or an operator's kill -9 of a process that cannot write), and
    started again once the disk works. SQLite's recovery replays the commit
    from the WAL, so the refused upload may exist after all (finding 12):
    then with its spool file, and processed; the client's retry is a
    duplicate and the instance ends `done` once, never `failed`."""
    data = tmp_path / "data"
    # --stable-age 600: nothing else commits between the refusal and the kill.
    srv, client, token, acknowledged = serve_one_done_study(rig, data, bundle, stable_age="600", seed=141,
                                                            env=eio.env())
    eio.require_loaded(srv)
    refused = make_study(1, seed=142)[0]
    eio.on(f"{data}/ich.sqlite", calls=("fdatasync", "fsync"))
    assert_unavailable(client.post_instance(refused.data), "storage-unavailable")
    assert [call for call, _ in eio.injected()] == ["fdatasync"], eio.injected()
    srv.kill()
    eio.off()

    srv.start()
    client = srv.client(token)
    after_restart = client.get(f"/v1/instances/{refused.sop}")
    retry = client.post_instance(refused.data)  # what a client does after a 503 with Retry-After
    outcome = client.wait_instance_done(refused.sop, timeout=60) if retry.status in (200, 202) else None
    print(f"after the restart: GET {after_restart.status} {after_restart.body[:200]!r}; retry {retry.status} "
          f"{retry.body[:120]!r}; instance {outcome}")
    assert retry.status in (200, 202) and outcome["status"] == "done", (retry, outcome)
    if after_restart.status == 200:
        assert after_restart.json()["status"] in ("queued", "done"), after_restart.json()
        assert retry.status == 200 and retry.json()["status"] == "duplicate", retry
    else:
        assert after_restart.status == 404, after_restart
    acknowledged[refused.sop] = refused.study
    assert srv.stop() == 0
    assert_spool_and_tmp_empty(data)
    check_database(data, tmp_path, acknowledged, set())


def test_storage_error_lines_name_their_cause(bundle, rig, tmp_path, eio):
    """Every error line logged while the database gives EIO says why (finding 5
    for the notifier): an operator must see 'disk I/O error', not only that
    something failed."""
    data = tmp_path / "data"
    srv = rig.server(data, bundle, args=["--threads", "2", "--stable-age", "2", "--max-delay-ms", "5"],
                     env=eio.env())
    token = srv.token("admin")
    srv.start()
    eio.require_loaded(srv)
    client = srv.client(token)
    upload = make_study(1, seed=151)[0]
    assert client.post_instance(upload.data).status == 202
    uploaded = time.monotonic()
    assert client.wait_instance_done(upload.sop, timeout=30)["status"] == "done"
    if time.monotonic() - uploaded > 1.5:
        pytest.skip("the upload took too long to process; its study may have settled before the fault")
    eio.on(f"{data}/ich.sqlite")
    # The study settles 2 s after its upload; from then on the notifier's write fails every 0.5 s.
    time.sleep(max(0.0, 4.0 - (time.monotonic() - uploaded)))
    late = make_study(1, seed=152)[0]
    assert_unavailable(client.post_instance(late.data), "storage-unavailable")
    eio.off()
    assert srv.stop() == 0
    errors = error_lines(srv)
    without = [line for line in errors if not re.search(r"disk I/O error|Input/output error", line)]
    print(f"{len(errors)} error lines, {len(without)} without the cause; e.g. {without[:1]}")
    assert errors, srv.log_tail()
    assert not without, f"{len(without)} of {len(errors)} error lines do not name the cause: {without[:3]}"


def test_eio_while_a_large_body_streams_to_tmp(bundle, rig, tmp_path, eio):
    """Bodies over 1 MiB are streamed to tmp/ as they arrive: EIO on writes
    there refuses a 1.3 MiB STOW with 503 body-storage-failed (and a
    Retry-After) while small uploads, kept in memory, are still accepted;
    /readyz says not ready (its probe writes tmp/)."""
    data = tmp_path / "data"
    srv, client, _, acknowledged = serve_one_done_study(rig, data, bundle, stable_age="600", seed=161, env=eio.env())
    eio.require_loaded(srv)
    large = SliceFactory().study(5, size=256 + 128)  # 5 x 288 KiB
    content_type, body = service.multipart_related([f.data for f in large])
    assert len(body) > 1 << 20

    eio.on(f"{data}/tmp/", calls=("write",))
    response = client.request("POST", "/dicomweb/studies", body, content_type=content_type, validate=False)
    problem = assert_unavailable(response, "body-storage-failed")
    assert_no_request_data(response, large, data)
    small = make_study(1, seed=162)[0]
    assert client.post_instance(small.data).status == 202
    acknowledged[small.sop] = small.study
    readyz = client.get("/readyz", token=None)
    assert client.get("/healthz", token=None).status == 200
    refusals = [line for line in srv.log_text().splitlines() if "body-storage-failed" in line]
    print(f"large STOW: {response.status} {problem['detail']!r}; /readyz {readyz.status} {readyz.body.decode()}\n"
          f"log: {refusals}; injected {sorted({(c, Path(p).parent.name) for c, p in eio.injected()})}")
    assert readyz.status == 503 and readyz.json()["checks"]["storage"] is False, readyz.json()
    assert os.listdir(data / "tmp") == [], "the refused body's file was left in tmp/"
    eio.off()

    assert client.request("POST", "/dicomweb/studies", body, content_type=content_type).status == 200
    acknowledged.update((f.sop, f.study) for f in large)
    for sop in acknowledged:
        assert client.wait_instance_done(sop, timeout=60)["status"] == "done"
    assert srv.stop() == 0
    assert_log_clean(srv, set(acknowledged))
    assert_spool_and_tmp_empty(data)
    check_database(data, tmp_path, acknowledged, set())


# --------------------------------------------------------------------------
# 6. A full disk under concurrent load


class SliceFactory:
    """CT Part-10 files from one template per size: new UIDs, the same pixels
    (about 4 ms a file instead of 50 ms for a new 512 x 512 phantom)."""

    def __init__(self):
        self.templates: dict[int, object] = {}

    def study(self, count: int, size: int = 64) -> list[service.SliceFile]:
        ds = self.templates.get(size)
        if ds is None:
            ds = self.templates[size] = service.ct_dataset(study=service.new_uid(), rows=size, cols=size, seed=size)
        study = service.new_uid()
        series = study + ".1"
        files = []
        for k in range(count):
            sop = service.new_uid()
            position = (-125.0, -125.0, 5.0 * k)
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
            ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = list(position)
            files.append(service.SliceFile(sop, study, series, k + 1, position, service.dataset_bytes(ds)))
        return files


@dataclass
class LoadUpload:
    kind: str  # "single" (POST /v1/instances) or "stow" (one request, > 1 MiB)
    files: list
    phase: str = ""  # "room", "full" or "freed": when the request was sent
    seconds: float = 0.0
    sent_whole: bool = True
    response: service.Response | None = None
    error: str | None = None  # no response: what the client saw

    @property
    def outcome(self) -> str:
        if self.response is None:
            return f"no answer ({self.error.split(':')[0]})"
        slug = self.response.json().get("type", "").rpartition(":")[2] \
            if self.response.media_type == "application/problem+json" else ""
        return f"{self.response.status} {slug}".strip()


def send_upload(port: int, token: str, upload: LoadUpload, timeout: float) -> None:
    """One upload on its own connection. The whole body is sent even when the
    server answers early (a refused body); the response is read in any case."""
    if upload.kind == "single":
        target, content_type, body = "/v1/instances", "application/dicom", upload.files[0].data
    else:
        target = "/dicomweb/studies"
        content_type, body = service.multipart_related([f.data for f in upload.files])
    request = service.build_request("POST", target, body=body, headers=[
        ("Authorization", f"Bearer {token}"), ("Content-Type", content_type), ("Connection", "close")])
    started = time.monotonic()
    try:
        with service.RawConnection("127.0.0.1", port, timeout=timeout) as conn:
            upload.sent_whole = conn.try_send(request)
            upload.response = conn.read_response(method="POST", target=target, timeout=timeout)
    except (OSError, AssertionError) as error:
        upload.error = f"{type(error).__name__}: {error}"
    upload.seconds = time.monotonic() - started


def acknowledged_sops(upload: LoadUpload) -> set[str]:
    """The instances a 200/202 acknowledges (for STOW, its ReferencedSOPSequence)."""
    response = upload.response
    if upload.kind == "single":
        assert response.json()["sopInstanceUID"] == upload.files[0].sop
        return {upload.files[0].sop}
    body = response.json()
    assert "00081198" not in body, f"STOW with failed parts: {body}"
    return {item["00081155"]["Value"][0] for item in body["00081199"]["Value"]}


def keep_full(directory: Path, stop: threading.Event, filled: threading.Event) -> None:
    """Writes `directory`/ballast until ENOSPC, and again every 20 ms to take
    whatever the server frees, until `stop`."""
    fd = os.open(directory / "ballast", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while not stop.is_set():
            write_until_full(fd, (1 << 20, 65536, 4096))
            filled.set()
            stop.wait(0.02)
    finally:
        os.close(fd)


def test_disk_full_under_concurrent_load(bundle, rig, tmp_path):
    """Four clients upload at once, two posting single 64 x 64 slices, two
    STOW-RS requests of 4 slices of 384 x 384 (1.15 MiB, streamed to tmp/),
    for 2 s with room, 4 s while a ballast file keeps the 32 MiB tmpfs full
    and 3 s after the ballast is deleted (the queue the load builds also
    fills the spool). Every request must be answered:
    200/202 (acknowledged) or a 503 problem with Retry-After (or 413); no 500,
    no hang. Afterwards, without a restart, every acknowledged instance is
    done once, nothing refused was kept, spool/ and tmp/ are empty."""
    point = rig.tmpfs(tmp_path / "fs", size="32m")
    data = point / "data"
    srv = rig.server(data, bundle, args=["--max-batch", "8", "--max-delay-ms", "20", "--threads", "2",
                                         "--stable-age", "1"])
    token = srv.token("admin")
    factory = SliceFactory()
    assert len(service.multipart_related([f.data for f in factory.study(4, size=384)])[1]) > 1 << 20
    srv.start()
    port = srv.port
    phase = ["room"]
    stop_load = threading.Event()
    done: list[LoadUpload] = []
    lock = threading.Lock()

    def client_loop(kind: str, pause: float) -> None:
        files = SliceFactory()  # one per thread: the template is changed for each file
        while not stop_load.is_set():
            upload = LoadUpload(kind, files.study(1) if kind == "single" else files.study(4, size=384))
            upload.phase = phase[0]
            send_upload(port, token, upload, timeout=30)
            with lock:
                done.append(upload)
            stop_load.wait(pause)

    clients = [threading.Thread(target=client_loop, args=(kind, pause), daemon=True)
               for kind, pause in (("single", 0.05), ("single", 0.05), ("stow", 0.4), ("stow", 0.4))]
    free: dict[str, list[int]] = {}

    def sample_free() -> None:  # free KiB on the tmpfs, by phase, for the report
        while not stop_load.is_set():
            stats = os.statvfs(point)
            free.setdefault(phase[0], []).append(stats.f_bavail * stats.f_frsize >> 10)
            stop_load.wait(0.1)

    clients.append(threading.Thread(target=sample_free, daemon=True))
    started = time.monotonic()
    for thread in clients:
        thread.start()
    time.sleep(2)
    stop_fill, filled = threading.Event(), threading.Event()
    filler = threading.Thread(target=keep_full, args=(point, stop_fill, filled), daemon=True)
    phase[0] = "full"
    filler.start()
    assert filled.wait(10), "the ballast did not fill the tmpfs"
    full_at = time.monotonic()
    time.sleep(4)
    stop_fill.set()
    filler.join(10)
    (point / "ballast").unlink()
    phase[0] = "freed"
    freed_at = time.monotonic()
    time.sleep(3)
    stop_load.set()
    for thread in clients:
        thread.join(60)
    assert not any(thread.is_alive() for thread in clients), "a client is still waiting for an answer"
    load_seconds = time.monotonic() - started

    # What each request got, by phase.
    table: dict[tuple[str, str, str], int] = {}
    for upload in done:
        key = (upload.phase, upload.kind, upload.outcome)
        table[key] = table.get(key, 0) + 1
    slowest = max(done, key=lambda u: u.seconds)
    print(f"{len(done)} requests in {load_seconds:.1f} s (full {full_at - started:.1f} to {freed_at - started:.1f} s); "
          f"slowest {slowest.seconds:.2f} s ({slowest.kind}, {slowest.outcome}); incomplete sends: "
          f"{sum(not u.sent_whole for u in done)}")
    for key in sorted(table):
        print(f"  {key[0]:6} {key[1]:6} {key[2]:32} {table[key]}")
    print("free KiB by phase (min, max): " + ", ".join(f"{name} {min(v)} to {max(v)}" for name, v in free.items()))
    unanswered = [u for u in done if u.response is None]
    assert not unanswered, \
        f"{len(unanswered)} uploads got no answer: {[(u.kind, u.phase, u.error) for u in unanswered][:5]}"

    acknowledged: dict[str, str] = {}
    refused: set[str] = set()
    for upload in done:
        response = upload.response
        if response.status in (200, 202):
            acknowledged.update((sop, upload.files[0].study) for sop in acknowledged_sops(upload))
            continue
        assert response.status in (503, 413), f"{upload.kind} in phase {upload.phase}: {response!r}"
        problem = assert_problem(response, response.status)
        if response.status == 503:
            assert_unavailable(response, problem["type"].rpartition(":")[2])
        assert_no_request_data(response, upload.files, data)
        refused |= {f.sop for f in upload.files}
    assert any(u.phase == "full" and u.response.status == 503 for u in done), "no upload was refused on the full disk"
    for name in ("room", "freed"):
        assert any(u.phase == name and u.response.status in (200, 202) for u in done), f"nothing acknowledged ({name})"

    # Recovery in the same process: every acknowledged instance gets its result
    # (the queue the load left drains, and with it the spool), new uploads work.
    stats = os.statvfs(point)
    client = srv.client(token)
    drain_started = time.monotonic()
    for sop in acknowledged:
        assert client.wait_instance_done(sop, timeout=60)["status"] == "done", sop
    print(f"{len(acknowledged)} acknowledged instances done {time.monotonic() - drain_started:.1f} s after the load "
          f"(free then {stats.f_bavail * stats.f_frsize >> 10} KiB of {stats.f_blocks * stats.f_frsize >> 10}); "
          f"{len(refused)} refused")
    after = factory.study(4, size=384)
    assert client.stow([f.data for f in after]).status == 200
    for f in after:
        assert client.wait_instance_done(f.sop, timeout=60)["status"] == "done"
    acknowledged.update((f.sop, f.study) for f in after)
    for sop in list(refused)[:5]:
        assert_problem(client.get(f"/v1/instances/{sop}"), 404, "instance-not-found")
    assert srv.stop() == 0
    assert not CRASH.search(srv.log_text()), srv.log_tail()
    assert_spool_and_tmp_empty(data)
    check_database(data, tmp_path, acknowledged, refused)


def test_eio_reading_the_spool_does_not_fail_acknowledged_uploads(bundle, rig, tmp_path, eio):
    """The batch cannot read its spooled files (EIO on read, e.g. a bad sector
    or a disk that drops out for a moment). The uploads were acknowledged and
    their files are intact; once reads work again they must get results."""
    data = tmp_path / "data"
    srv, client, _, acknowledged = serve_one_done_study(rig, data, bundle, stable_age="600", seed=171, env=eio.env(),
                                                        args=["--max-delay-ms", "1500"])
    eio.require_loaded(srv)
    waiting = post_acknowledged(client, acknowledged, 3, seed=172)
    eio.on(f"{data}/spool/", calls=("read",))
    deadline = time.monotonic() + 15
    while not eio.injected():
        assert time.monotonic() < deadline, "the batch did not read its spool files"
        time.sleep(0.05)
    time.sleep(0.5)
    eio.off()
    outcomes = {f.sop: client.wait_instance_done(f.sop, timeout=60) for f in waiting}
    print(f"injected {sorted({(c, Path(p).parent.name) for c, p in eio.injected()})}; outcomes "
          f"{[(o['status'], (o.get('error') or {}).get('type')) for o in outcomes.values()]}; "
          f"spool {os.listdir(data / 'spool')}; errors {error_lines(srv)[:2]}")
    assert all(o["status"] == "done" for o in outcomes.values()), outcomes
    assert srv.stop() == 0
    assert_spool_and_tmp_empty(data)
    check_database(data, tmp_path, acknowledged, set())


def test_body_storage_failure_is_logged_with_its_cause(bundle, rig, tmp_path, eio):
    data = tmp_path / "data"
    srv = rig.server(data, bundle, args=["--threads", "2", "--stable-age", "600"], env=eio.env())
    token = srv.token("admin")
    srv.start()
    eio.require_loaded(srv)
    large = SliceFactory().study(5, size=384)
    eio.on(f"{data}/tmp/", calls=("write",))
    response = srv.client(token).stow([f.data for f in large], validate=False)
    eio.off()
    assert_unavailable(response, "body-storage-failed")
    lines = [line for line in srv.log_text().splitlines() if "body" in line]
    print(f"log lines about the body: {lines}")
    assert any(re.search(r" (warning|error) ich-server: .*Input/output error", line)
               for line in srv.log_text().splitlines()), lines
