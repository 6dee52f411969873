"""Security checks of issue 6 over real sockets.

(a) The route table: every `router.add(...)` of Sources/Service/Routes/Routes.swift
    is listed in openapi.yaml with the same scope and vice versa; only /healthz
    and /readyz are open; every other route answers 401 without a token (and
    with a bad one) and 403 with a token of the wrong scope.
(b) No patient identifiers (PatientName, PatientID of the uploads, also put in
    paths, queries and tokens) in the server's standard output and error at the
    default log level, nor in any file of the data directory but the database.
(c) File modes: spool/ and tmp/ 0700, spool files and request-body files 0600,
    the database file and its -wal/-shm 0600.
(d) Path traversal and odd path parameters: 4xx problem+json that does not
    echo the input, and the server keeps serving.
(e) The audit trail: one row per read, nothing in the API writes or deletes it.
(f) Failed authentication is limited per client address: past the limit an
    address gets 429 with Retry-After, even with a valid token, while other
    addresses (127.0.0.2 on the loopback) and the open routes are served.

(g) Token lifecycle from the command line while the server runs: `token list`
    shows no secret or hash, a token revoked by `token revoke` (another
    process) is refused within a second or so, one made with `--expires-in`
    stops working when it expires, and both are audited.

One server (module scope, default log level, no failed-authentication limit
since (a) fails on purpose) serves (a), (b), (d) and (e); (c) starts its own
with a batcher that never fills (jobs stay queued), (f) one with a limit of 5.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402
from service import Server, assert_problem, build_request, ct_dataset, dataset_bytes, make_study, new_uid  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
ROUTES_SWIFT = REPO_ROOT / "Sources" / "Service" / "Routes" / "Routes.swift"
SERVER_ARGS = ["--max-batch", "8", "--max-delay-ms", "10", "--threads", "2", "--stable-age", "1",
               "--auth-failure-limit", "0"]
OPEN_ROUTES = {("GET", "/healthz"), ("GET", "/readyz")}
UNKNOWN_UID = "1.2.826.0.1.3680043.8.498.999999998"
CANARY_NAME = "PHI^CANARY^NAME"
CANARY_ID = "CANARY-ID-123"
CANARIES = [CANARY_NAME, CANARY_ID, "PHI%5ECANARY%5ENAME", "CANARY%2DID%2D123", "PHI^CANARY", "CANARY-ID"]


# --------------------------------------------------------------------------
# Fixtures


def require_server_binary() -> None:
    problem = service.binary_problem(service.server_binary())
    if problem:
        pytest.fail(problem, pytrace=False)


def start_with_umask(srv: Server, scopes=("ingest", "read", "admin")) -> Server:
    """Tokens (which create the database) and the start under umask 022, the usual
    default, so that the file modes seen are the server's own choice."""
    previous = os.umask(0o022)
    try:
        srv.tokens = {scope: srv.token(scope, name=f"security-{scope}") for scope in scopes}
        srv.start()
    finally:
        os.umask(previous)
    return srv


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_server_binary()
    folder = tmp_path_factory.mktemp("security")
    srv = Server(folder / "data", service.test_bundle(), args=SERVER_ARGS, log_path=folder / "server.log")
    start_with_umask(srv)
    srv.tokens["audit-reader"] = srv.token("read", name="audit-reader")
    yield srv
    if srv.running:
        srv.stop()


# --------------------------------------------------------------------------
# (a) The route table


def normalize(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def swift_routes() -> dict[tuple[str, str], str | None]:
    """(method, path with {} for parameters) -> scope (None: open), from Routes.swift."""
    text = ROUTES_SWIFT.read_text()
    named = {m.group(1): m.group(2) for m in re.finditer(r"let (\w+) = Route\(scope: (nil|\.\w+)", text)}
    adds = re.findall(r"router\.add\(", text)
    routes: dict[tuple[str, str], str | None] = {}
    for m in re.finditer(r'router\.add\("([A-Z]+)",\s*"([^"]+)",\s*(?:Route\(scope:\s*(nil|\.\w+)|(\w+)\s*\))', text):
        method, path, inline, name = m.groups()
        scope = inline if inline is not None else named.get(name)
        assert scope is not None, f"cannot tell the scope of {method} {path} ({m.group(0)})"
        key = (method, normalize(path))
        assert key not in routes, f"{method} {path} added twice"
        routes[key] = None if scope == "nil" else scope.lstrip(".")
    assert len(routes) == len(adds), \
        f"Routes.swift has {len(adds)} router.add calls but {len(routes)} were understood: update this parser"
    return routes


def spec_routes() -> dict[tuple[str, str], str | None]:
    spec = yaml.safe_load((REPO_ROOT / "openapi.yaml").read_text())
    routes = {}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method.lower() not in ("get", "post", "put", "patch", "delete", "head", "options"):
                continue
            security = operation.get("security", spec.get("security"))
            scope = operation.get("x-required-scope")
            assert (scope is None) == (security == []), \
                f"{method.upper()} {path}: x-required-scope {scope!r} but security {security!r}"
            routes[(method.upper(), normalize(path))] = scope
    return routes


ROUTES = swift_routes()
PROTECTED = sorted((m, p, s) for (m, p), s in ROUTES.items() if s is not None)
PROTECTED_IDS = [f"{m} {p}" for m, p, _ in PROTECTED]
WRONG_SCOPES = {"admin": ["read", "ingest"], "ingest": ["read"], "read": ["ingest"]}


def test_route_table_matches_openapi():
    assert swift_routes() == spec_routes()


def test_only_health_and_readiness_are_open():
    open_routes = {key for key, scope in swift_routes().items() if scope is None}
    assert open_routes == OPEN_ROUTES, f"routes without a scope: {sorted(open_routes - OPEN_ROUTES)}"


def test_routes_are_added_in_one_place():
    """A route added anywhere else (another router, another table) would escape this walk."""
    offenders = []
    for path in (REPO_ROOT / "Sources").rglob("*.swift"):
        if path == ROUTES_SWIFT:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if re.search(r'\.add\(\s*"(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)"', line) or "Router<Route>()" in line:
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders
    service_swift = (REPO_ROOT / "Sources" / "Service" / "TriageService.swift").read_text()
    assert "router = Routes.table" in service_swift, "the service no longer serves Routes.table"


def concrete(path: str) -> str:
    return path.replace("{}", UNKNOWN_UID)


def request(server, method: str, target: str, token: str | None, *, headers=None):
    body = b"" if method in ("POST", "PUT", "PATCH") else None
    return server.client(validate=False).request(method, target, body, token=token, headers=headers)


@pytest.mark.parametrize("method,path,scope", PROTECTED, ids=PROTECTED_IDS)
def test_route_without_token_is_401(server, method, path, scope):
    for verb in [method] + (["HEAD"] if method == "GET" else []):
        response = request(server, verb, concrete(path), None)
        assert response.status == 401, repr(response)
        if verb != "HEAD":
            assert_problem(response, 401, "unauthorized")
        assert (response.header("WWW-Authenticate") or "").startswith("Bearer"), repr(response)
    for authorization in (f"Bearer {CANARY_ID}", "Bearer ich_" + "A" * 43, "Basic " + server.tokens["admin"]):
        response = request(server, method, concrete(path), None, headers={"Authorization": authorization})
        assert_problem(response, 401, "unauthorized")


@pytest.mark.parametrize("method,path,scope", PROTECTED, ids=PROTECTED_IDS)
def test_route_with_wrong_scope_is_403(server, method, path, scope):
    for wrong in WRONG_SCOPES[scope]:
        response = request(server, method, concrete(path), server.tokens[wrong])
        assert_problem(response, 403, "forbidden")


@pytest.mark.parametrize("method,path", sorted(OPEN_ROUTES))
def test_open_routes_need_no_token(server, method, path):
    assert request(server, method, path, None).status == 200


# --------------------------------------------------------------------------
# (b) No patient identifiers in logs or files


def canary_bytes(study: str, instance: int, *, modality: str = "CT") -> tuple[str, bytes]:
    sop = new_uid()
    ds = ct_dataset(study=study, sop=sop, instance=instance, position=(-125.0, -125.0, 5.0 * instance),
                    patient_name=CANARY_NAME, modality=modality, seed=instance)
    ds.PatientID = CANARY_ID
    ds.OtherPatientIDs = CANARY_ID
    ds.AccessionNumber = "CANARY-ACC"
    return sop, dataset_bytes(ds)


def phi_session(server) -> dict:
    """Uploads, failures, bad tokens, odd queries and reads, all carrying the canaries."""
    admin = server.client(server.tokens["admin"], validate=False)
    ingest = server.client(server.tokens["ingest"], validate=False)
    reader = server.client(server.tokens["read"], validate=False)
    study = new_uid()
    sops, datas = zip(*(canary_bytes(study, k) for k in range(1, 5)))
    assert ingest.stow(list(datas[:2])).status == 200
    assert ingest.stow(list(datas[:2])).status == 202  # duplicates: a warning
    assert ingest.post_instance(datas[2]).status == 202
    assert ingest.post_instance(datas[2]).status == 200  # duplicate
    assert ingest.stow([datas[3]], study).status == 200
    _, mr = canary_bytes(study, 9, modality="MR")
    skipped = ingest.post_instance(mr)  # a valid instance the rules do not triage: stored as skipped
    assert skipped.status == 200 and skipped.json()["status"] == "skipped", skipped.body
    assert ingest.stow([mr, CANARY_NAME.encode() * 30]).status == 202  # the MR is referenced, the junk failed
    assert ingest.post_instance(CANARY_ID.encode() * 50).status == 400
    assert ingest.post_instance(datas[0][: len(datas[0]) // 2]).status in (200, 400, 422)  # truncated copy
    other = new_uid()
    _, wrong_study = canary_bytes(other, 1)
    assert ingest.stow([wrong_study], study).status == 409  # StudyInstanceUID differs from the URL's
    for target in (f"/v1/studies/{CANARY_ID}", "/v1/studies/PHI%5ECANARY%5ENAME", f"/v1/instances/{CANARY_ID}",
                   f"/v1/studies?since={CANARY_ID}", f"/v1/studies?cursor={CANARY_ID}", f"/{CANARY_ID}"):
        assert 400 <= reader.get(target).status < 500, target
    for authorization in (f"Bearer {CANARY_ID}", f"Bearer {CANARY_NAME}", CANARY_NAME):
        assert reader.get("/v1/studies", headers={"Authorization": authorization}, token=None).status == 401
    assert reader.request("DELETE", f"/v1/studies/{study}").status == 403
    for sop in sops:
        reader.wait_instance_done(sop, timeout=60)
    reader.wait_complete(study, timeout=60)
    assert reader.get("/v1/studies?limit=10").status == 200
    assert admin.get("/metrics").status == 200
    # A second study, deleted while done.
    _, extra = canary_bytes(other, 2)
    assert ingest.post_instance(extra).status == 202
    reader.wait_complete(other, timeout=60)
    assert admin.request("DELETE", f"/v1/studies/{other}").status == 204
    return {"study": study, "sops": sops}


def test_no_patient_identifiers_in_logs_or_files(server):
    phi_session(server)
    time.sleep(0.5)
    found = []
    stdout = "\n".join(server._stdout_lines)
    stderr = server.log_text()
    assert "listening on" in stdout and "model ready" in stderr, "the logs were not captured"
    for name, text in (("stdout", stdout), ("stderr", stderr)):
        for canary in CANARIES:
            if canary.lower() in text.lower():
                at = text.lower().find(canary.lower())
                found.append(f"{name}: {canary!r} in ...{text[max(0, at - 200):at + 100]!r}")
    for path in server.data_dir.rglob("*"):
        if path.is_file() and not path.name.startswith("ich.sqlite"):
            data = path.read_bytes()
            for canary in CANARIES:
                if canary.encode() in data:
                    found.append(f"{path.relative_to(server.data_dir)}: {canary!r}")
    assert not found, found


def test_spool_file_names_do_not_come_from_request_data(server):
    """Spool files are named by the server (a random UUID), never from UIDs or other request data."""
    text = (REPO_ROOT / "Sources" / "Service" / "Spool.swift").read_text()
    assert re.search(r"func newName\(\) -> String \{ UUID\(\)\.uuidString\.lowercased\(\) \+ \"\.dcm\" \}", text)


# --------------------------------------------------------------------------
# (c) File modes


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def queued_server(tmp_path_factory):
    """A batch waits for 64 slices or 10 minutes: uploaded jobs stay in the spool."""
    require_server_binary()
    folder = tmp_path_factory.mktemp("modes")
    srv = Server(folder / "data", service.test_bundle(),
                 args=["--max-batch", "64", "--max-delay-ms", "600000", "--threads", "2", "--stable-age", "1"],
                 log_path=folder / "server.log")
    start_with_umask(srv)
    ingest = srv.client(srv.tokens["ingest"])
    files = make_study(3, seed=77)
    assert ingest.stow([f.data for f in files[:2]]).status == 200
    assert ingest.post_instance(files[2].data).status == 202
    yield srv
    if srv.running:
        srv.kill()


def test_directories_are_0700(queued_server):
    data = queued_server.data_dir
    assert mode(data / "spool") == 0o700, oct(mode(data / "spool"))
    assert mode(data / "tmp") == 0o700, oct(mode(data / "tmp"))


def test_a_data_directory_the_server_creates_is_0700(tmp_path):
    """(service.Server makes the data directory itself before `token create`, with the test's umask,
    so the directory of the fixtures says nothing about the server.)"""
    data = tmp_path / "new" / "data"
    previous = os.umask(0o022)
    try:
        result = subprocess.run([str(service.server_binary()), "token", "create", "--scope", "read",
                                 "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
    finally:
        os.umask(previous)
    assert result.returncode == 0, result.stderr
    assert mode(data) == 0o700, oct(mode(data))


def test_spool_files_are_0600(queued_server):
    files = list((queued_server.data_dir / "spool").iterdir())
    assert len(files) == 3, files
    for path in files:
        assert mode(path) == 0o600, f"{path.name}: {oct(mode(path))}"
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.dcm", path.name), path.name


def test_request_body_files_are_0600(queued_server):
    """A body over 1 MiB streams into tmp/: look at the file while the body is half sent."""
    token = queued_server.tokens["ingest"]
    head = build_request("POST", "/v1/instances", headers=[("Authorization", f"Bearer {token}"),
                                                           ("Content-Type", "application/dicom"),
                                                           ("Content-Length", str(4 * 1024 * 1024))])
    with queued_server.client().connection(timeout=30) as conn:
        conn.send(head + b"\0" * (2 * 1024 * 1024))
        deadline = time.monotonic() + 10
        bodies = []
        while not bodies and time.monotonic() < deadline:
            bodies = list((queued_server.data_dir / "tmp").iterdir())
            time.sleep(0.05)
        assert bodies, "no body file in tmp/ while a 4 MiB body was being received"
        for path in bodies:
            assert mode(path) == 0o600, f"{path.name}: {oct(mode(path))}"
    deadline = time.monotonic() + 10
    while list((queued_server.data_dir / "tmp").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list((queued_server.data_dir / "tmp").iterdir()), "an abandoned body file stayed in tmp/"


def database_modes(data: Path) -> dict[str, str]:
    return {p.name: oct(mode(p)) for p in sorted(data.glob("ich.sqlite*"))}


def test_database_file_is_0600(queued_server):
    modes = database_modes(queued_server.data_dir)
    print("database file modes:", modes)
    assert modes and all(m == oct(0o600) for m in modes.values()), modes


def test_report_database_mode(queued_server):
    """Not a check: records the modes in the test output (-s or -rA)."""
    data = queued_server.data_dir
    print("database file modes under umask 022:", database_modes(data),
          "data dir (made by the test harness):", oct(mode(data)))


# --------------------------------------------------------------------------
# (d) Path traversal and odd path parameters


LONG_UID = "1" * 65
ODD_TARGETS = [
    ("GET", "/v1/studies/..%2f..%2fetc%2fpasswd", ["passwd", "etc"]),
    ("GET", "/v1/studies/..%2F..%2F..%2Fetc%2Fshadow", ["shadow"]),
    ("GET", "/v1/instances/%00", ["%00", "\\u0000"]),
    ("GET", "/v1/instances/1.2.3%00.4", ["%00", "\\u0000", "1.2.3"]),
    ("GET", "/v1/studies/%ff", ["%ff", "\\u00ff", "\ufffd"]),
    ("GET", "/v1/studies/%c0%ae%c0%ae", ["%c0"]),
    ("GET", f"/v1/studies/{LONG_UID}", [LONG_UID]),
    ("GET", f"/v1/instances/{LONG_UID}", [LONG_UID]),
    ("DELETE", "/v1/studies/..%2f..%2fetc%2fpasswd", ["passwd"]),
    ("DELETE", f"/v1/studies/{LONG_UID}", [LONG_UID]),
    ("POST", "/dicomweb/studies/..%2f..%2fetc%2fpasswd", ["passwd"]),
    ("POST", f"/dicomweb/studies/{LONG_UID}", [LONG_UID]),
    ("POST", "/dicomweb/studies/%ff", ["%ff"]),
    ("GET", "/v1/studies/../../etc/passwd", ["passwd"]),
    ("GET", "/v1/studies/%2e%2e/%2e%2e/etc/passwd", ["passwd"]),
    ("GET", "/v1/studies?since=%ff", ["%ff"]),
    ("GET", "/v1/studies/1.2.3/../../../metrics", ["metrics"]),
]


def raw_exchange(server, method: str, target: str, token: str) -> service.Response | None:
    headers = [("Authorization", f"Bearer {token}"), ("Connection", "close")]
    body = None
    if method == "POST":
        content_type, body = service.multipart_related([service.ct_bytes(study=new_uid(), position=(0, 0, 0))])
        headers.append(("Content-Type", content_type))
    with server.client().connection(timeout=15) as conn:
        conn.send(build_request(method, target, headers=headers, body=body))
        return conn.read_response(method=method, target=target, timeout=15)


@pytest.mark.parametrize("method,target,echo", ODD_TARGETS, ids=[f"{m} {t}" for m, t, _ in ODD_TARGETS])
def test_odd_path_parameters_are_4xx_without_echo(server, method, target, echo):
    response = raw_exchange(server, method, target, server.tokens["admin"])
    print(f"{method} {target} -> {response.status} {response.body[:120]!r}")
    assert 400 <= response.status < 500, repr(response)
    if method == "POST" and response.status == 409:
        # STOW into a URL study that is not the instance's: answered in the DICOM JSON model (openapi.yaml).
        assert response.media_type == "application/dicom+json", repr(response)
    else:
        assert response.media_type == "application/problem+json", repr(response)
        problem = response.json()
        assert problem["status"] == response.status and problem["type"].startswith(service.PROBLEM_PREFIX), problem
    text = response.raw.decode("latin-1")
    for fragment in echo:
        assert fragment not in text, f"{fragment!r} echoed: {response!r}"
    if method == "POST":
        assert response.status != 200 and response.status != 202, "stored under an odd study URL"
    # The server keeps serving.
    assert server.client(validate=False).get("/healthz", token=None).status == 200


def test_traversal_reaches_no_file(server):
    """Whatever the router made of them, the odd paths neither created nor read files outside the data dir."""
    entries = {p.relative_to(server.data_dir).parts[0] for p in server.data_dir.rglob("*")}
    assert entries <= {"ich.sqlite", "ich.sqlite-wal", "ich.sqlite-shm", "spool", "tmp"}, entries


# --------------------------------------------------------------------------
# (e) The audit trail


def audit_rows(server) -> list[tuple]:
    connection = sqlite3.connect(f"file:{server.data_dir / 'ich.sqlite'}?mode=ro", uri=True)
    try:
        return connection.execute(
            "SELECT a.id, t.name, a.action, a.study_instance_uid, a.sop_instance_uid "
            "FROM audit a LEFT JOIN tokens t ON t.id = a.token_id ORDER BY a.id").fetchall()
    finally:
        connection.close()


def test_routes_do_not_write_the_audit_table():
    """The only SQL on `audit` in the whole code base is the INSERT of AuditLog.record (and schema steps
    that add a column, which change no row), and the routes call it only as a side effect of a read
    (and of a deletion, a priority change or a token operation)."""
    writes = []
    for path in (REPO_ROOT / "Sources").rglob("*.swift"):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if re.search(r"ALTER\s+TABLE\s+audit\s+ADD\s+COLUMN\b", line, re.I) and path.name == "Schema.swift":
                continue
            if re.search(r"\b(UPDATE|DELETE\s+FROM|DROP\s+TABLE|REPLACE\s+INTO|ALTER\s+TABLE)\s+audit\b", line, re.I):
                writes.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert not writes, writes
    calls = []
    # The token operations' audit lives beside their SQL in Auth.swift, shared by the routes and the CLI.
    for path in [*(REPO_ROOT / "Sources" / "Service" / "Routes").glob("*.swift"), REPO_ROOT / "Sources" / "Service" / "Auth.swift"]:
        for line in path.read_text().splitlines():
            if re.search(r"audit", line, re.I) and not line.strip().startswith("//"):
                calls.append((path.name, line.strip()))
    actions = sorted(re.search(r'"([a-z-]+)"', line).group(1) for _, line in calls if re.search(r'"[a-z-]+"', line))
    assert actions == ["create-token", "delete-study", "list-tokens", "prioritize-study", "read-instance", "read-report",
                       "read-study", "read-worklist", "revoke-token"], calls
    assert all("audit" not in path for _, path in ROUTES), "a route path names the audit trail"


def test_every_read_is_audited_and_deletion_keeps_the_trail(server):
    ingest = server.client(server.tokens["ingest"])
    admin = server.client(server.tokens["admin"])
    reader = server.client(server.tokens["audit-reader"])
    files = make_study(2, seed=4242)
    assert ingest.stow([f.data for f in files]).status == 200
    study, sops = files[0].study, [f.sop for f in files]
    before = len(audit_rows(server))
    reader.wait_complete(study, timeout=60)  # one or more GET /v1/studies/{uid}
    polls = sum(1 for r in server.recorder if r.target.startswith(f"/v1/studies/{study}") and r.method == "GET")
    for sop in sops:
        assert reader.get(f"/v1/instances/{sop}").status == 200
    assert reader.get("/v1/studies?limit=5").status == 200
    assert reader.get(f"/v1/studies/{study}").status == 200
    assert_problem(reader.get(f"/v1/instances/{UNKNOWN_UID}"), 404, "instance-not-found")
    rows = [r for r in audit_rows(server)[before:] if r[1] == "audit-reader"]
    actions = [r[2] for r in rows]
    assert actions.count("read-study") == polls + 1, rows
    assert actions.count("read-instance") == len(sops), rows
    assert actions.count("read-worklist") == 1, rows
    assert {r[4] for r in rows if r[2] == "read-instance"} == set(sops)
    assert all(r[3] == study for r in rows if r[2] in ("read-study", "read-instance"))
    trail = [r for r in audit_rows(server) if r[3] == study]
    # Nothing in the API removes it: deleting the study keeps its trail and adds a row.
    assert admin.request("DELETE", f"/v1/studies/{study}").status == 204
    after = [r for r in audit_rows(server) if r[3] == study]
    assert after[: len(trail)] == trail, "deleting a study changed its audit rows"
    assert [r[2] for r in after[len(trail):]] == ["delete-study"], after[len(trail):]
    # No route accepts a write to an audit path; every other method on the known paths is 405.
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for target in ("/v1/audit", "/audit", f"/v1/studies/{study}/audit"):
            response = admin.request(method, target, b"{}" if method != "DELETE" else None, validate=False)
            assert response.status == 404, repr(response)
        for target in ("/v1/studies", f"/v1/instances/{sops[0]}"):
            if (method, normalize(target.replace(sops[0], "{x}"))) not in ROUTES:
                response = admin.request(method, target, b"{}" if method != "DELETE" else None, validate=False)
                assert response.status == 405, repr(response)
    final = audit_rows(server)
    assert [r for r in final if r[3] == study] == after
    assert len(final) >= before + len(rows)


# --------------------------------------------------------------------------
# (f) Failed-authentication limit


def raw_get(port: int, target: str, token: str | None, source: str = "127.0.0.1") -> service.Response:
    headers = [("Authorization", f"Bearer {token}")] if token else []
    with service.RawConnection("127.0.0.1", port, source=source) as c:
        c.send(build_request("GET", target, headers=headers))
        return c.read_response(method="GET", target=target)


def test_failed_authentication_is_limited_per_address(tmp_path):
    require_server_binary()
    srv = Server(tmp_path / "data", service.test_bundle(), args=["--threads", "2", "--auth-failure-limit", "5"])
    read = srv.token("read")
    with srv:
        for attempt in range(5):
            assert_problem(raw_get(srv.port, "/v1/studies", f"ich_wrong{attempt}"), 401, "unauthorized")
        refused = raw_get(srv.port, "/v1/studies", "ich_wrong")
        assert_problem(refused, 429, "too-many-auth-failures")
        assert 1 <= int(refused.header("Retry-After")) <= 60
        assert_problem(raw_get(srv.port, "/v1/studies", read), 429, "too-many-auth-failures")
        assert raw_get(srv.port, "/healthz", None).status == 200
        assert raw_get(srv.port, "/v1/studies", read, source="127.0.0.2").status == 200
        assert raw_get(srv.port, "/v1/studies", "ich_wrong", source="127.0.0.2").status == 401
        assert "repeated failed authentication" in srv.log_text()


def test_token_timing_tool_runs():
    """Tools/token_timing.py in miniature: every near-miss token is refused with 401 and the valid one served
    (the tool exits on any other status). Its timings are read by people (docs/RELIABILITY.md), never asserted."""
    require_server_binary()
    result = subprocess.run([sys.executable, str(REPO_ROOT / "Tools" / "token_timing.py"), "--requests", "20", "--json"],
                            capture_output=True, text=True, timeout=180, cwd=str(REPO_ROOT))
    assert result.returncode == 0, result.stderr[-2000:]
    classes = json.loads(result.stdout.strip().splitlines()[-1])["classes"]
    assert set(classes) == {"valid", "random", "random-2", "first-char", "prefix-40", "last-char"}
    assert all(row["n"] == 20 for row in classes.values())


# --------------------------------------------------------------------------
# (g) Token lifecycle


def listed_tokens(server) -> list[dict]:
    result = server.token_command("list", "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def refused_after(server, token: str, limit: float = 5.0) -> float:
    """Seconds until a read with `token` is answered 401 (fails past `limit`)."""
    start = time.monotonic()
    while True:
        status = server.client(token).get("/v1/studies?limit=1").status
        elapsed = time.monotonic() - start
        if status == 401:
            return elapsed
        assert status == 200 and elapsed < limit, f"still {status} after {elapsed:.1f} s"
        time.sleep(0.05)


def test_a_token_revoked_from_the_command_line_is_refused(server):
    token = server.token("read", name="leaked-laptop")
    assert server.client(token).get("/v1/studies?limit=1").status == 200
    rows = listed_tokens(server)
    text = json.dumps(rows)
    assert token not in text and "hash" not in text, "token list shows a secret"
    entry = next(r for r in rows if r["name"] == "leaked-laptop")
    assert entry["status"] == "active" and entry["scope"] == "read"
    assert entry["lastUsedAt"] is not None, "its use above is recorded"
    revoked = server.token_command("revoke", str(entry["id"]))
    assert revoked.returncode == 0, revoked.stderr
    delay = refused_after(server, token)
    print(f"revoked from another process: refused after {delay:.2f} s")
    assert next(r for r in listed_tokens(server) if r["id"] == entry["id"])["status"] == "revoked"
    with sqlite3.connect(f"file:{server.data_dir / 'ich.sqlite'}?mode=ro", uri=True) as db:
        actions = db.execute("SELECT action, token_id FROM audit WHERE subject_token_id = ? ORDER BY id", (entry["id"],)).fetchall()
    assert actions == [("create-token", None), ("revoke-token", None)]
    unknown = server.token_command("revoke", "999999")
    assert unknown.returncode == 1 and "no token" in unknown.stderr


def test_an_expiring_token_stops_at_its_expiry(server):
    result = server.token_command("create", "--scope", "read", "--name", "two-seconds", "--expires-in", "2s")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert server.client(token).get("/v1/studies?limit=1").status == 200
    entry = next(r for r in listed_tokens(server) if r["name"] == "two-seconds")
    assert entry["expiresAt"] is not None
    refused_after(server, token, limit=6.0)
    assert next(r for r in listed_tokens(server) if r["name"] == "two-seconds")["status"] == "expired"
    bad = server.token_command("create", "--scope", "read", "--expires-in", "soon")
    assert bad.returncode != 0 and "expires-in" in bad.stderr
