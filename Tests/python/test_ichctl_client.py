"""`ichctl push`, `study`, `worklist` and `wait` (libcurl) against a real `ich-server`.

A folder holds two CT studies (one with a subfolder), a text file and an MR slice
of the first study: the first push stores all six instances (the service records
the MR slice as a skipped series) and skips the text file, exit status 0; a second
push of the CT slices reports duplicates with exit status 0. The query commands' JSON is
compared with the HTTP API's, and their tables must carry the model notice.
A server whose queue limit is 0 answers every ingest with 503 + Retry-After:
push retries, then reports the instances failed (exit 1); a wrong token and an
unreachable server are exit 2 with a message.

The binaries are `$ICHCTL` and `$ICH_SERVER` (default `.build/release/...`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402
from service import LABELS, Server, make_study, new_uid  # noqa: E402

SERVER_ARGS = ["--max-batch", "8", "--max-delay-ms", "10", "--threads", "2", "--stable-age", "1"]


def require_binaries() -> None:
    for binary in (service.server_binary(), service.ichctl_binary()):
        problem = service.binary_problem(binary)
        if problem:
            pytest.fail(problem, pytrace=False)


def ichctl(*args: str, server: Server | None = None, token: str | None = None, timeout: float = 60,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [str(service.ichctl_binary()), *args]
    if server is not None:
        command += ["--server", server.base_url]
    if token is not None:
        command += ["--token", token]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ICH_")}
    environment.update(env or {})
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)


def summary(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_binaries()
    folder = tmp_path_factory.mktemp("client-server")
    srv = Server(folder / "data", service.test_bundle(), args=SERVER_ARGS)
    srv.tokens = {scope: srv.token(scope) for scope in ("ingest", "read", "admin")}
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log_tail()


@pytest.fixture(scope="module")
def pushed(server, tmp_path_factory):
    """The folder, its two studies, and the first push's result."""
    root = tmp_path_factory.mktemp("pacs")
    study_a = make_study(3, seed=1)
    study_b = make_study(2, seed=2)
    (root / "a" / "series1").mkdir(parents=True)
    (root / "b").mkdir()
    for k, f in enumerate(study_a):
        (root / "a" / "series1" / f"slice{k}.dcm").write_bytes(f.data)
    for k, f in enumerate(study_b):
        (root / "b" / f"IM{k:04d}").write_bytes(f.data)  # no extension: found by content
    (root / "README.txt").write_text("not DICOM\n")
    mr_sop = new_uid()
    (root / "mr.dcm").write_bytes(service.ct_bytes(study=study_a[0].study, series=study_a[0].study + ".9",
                                                   sop=mr_sop, modality="MR",
                                                   position=(0, 0, 0), patient_name="PATIENT^SECRET"))
    # 20 KiB per request: the 64x64 slices (about 8.5 KiB) travel two by two.
    result = ichctl("push", str(root), "--json", "--max-request-bytes", "20KiB", "--parallel", "3",
                    server=server, token=server.tokens["ingest"])
    return root, study_a, study_b, mr_sop, result


def test_push_stores_every_instance_and_skips_non_dicom(pushed):
    root, study_a, study_b, mr_sop, result = pushed
    assert result.returncode == 0, (result.stdout, result.stderr)
    counts = summary(result)
    assert counts["studies"] == 2
    assert counts["instances"] == 6
    assert counts["requests"] == 3, counts  # A: 3 CT + the MR slice, two per request; B: one request
    assert counts["stored"] == 6 and counts["duplicates"] == 0
    assert counts["failed"] == 0 and counts["failedByReason"] == {}
    assert counts["skipped"] == 1  # the text file, not sent
    assert counts["exitCode"] == 0
    assert "README.txt: not a DICOM Part-10 file" in result.stderr
    assert "PATIENT^SECRET" not in result.stdout + result.stderr


def test_push_again_reports_duplicates_and_exit_0(server, pushed):
    root, *_ = pushed
    result = ichctl("push", str(root / "a"), str(root / "b"), server=server, token=server.tokens["ingest"])
    assert result.returncode == 0, (result.stdout, result.stderr)
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if not line.startswith(" "))
    assert lines["studies"] == "2"
    assert lines["stored"] == "0"
    assert lines["duplicates"] == "5"
    assert lines["failed"] == "0"
    assert lines["skipped"] == "0"
    # Not a terminal: one plain progress line per request.
    assert result.stderr.count("duplicates") == 2, result.stderr


def test_wait_study_and_worklist_agree_with_the_api(server, pushed):
    _, study_a, study_b, _, _ = pushed
    read = server.tokens["read"]
    for study in (study_a[0].study, study_b[0].study):
        waited = ichctl("wait", study, "--timeout", "60", "--json", server=server, token=read, timeout=90)
        assert waited.returncode == 0, (waited.stdout, waited.stderr)
        assert json.loads(waited.stdout)["status"] == "complete"
    api = server.client(read).get(f"/v1/studies/{study_a[0].study}").json()

    shown = ichctl("study", study_a[0].study, "--json", server=server, token=read)
    assert shown.returncode == 0, shown.stderr
    mine = json.loads(shown.stdout)
    assert mine["labels"] == api["labels"]
    assert mine["counts"] == api["counts"] == {"received": 4, "processed": 3, "failed": 0, "skipped": 1, "queued": 0}
    assert [(s["modality"], s["role"], s.get("reason")) for s in mine["series"]] == [("CT", "primary", None),
                                                                                   ("MR", "skipped", "not-ct")]

    table = ichctl("study", study_a[0].study, server=server, token=read)
    assert table.returncode == 0, table.stderr
    text = table.stdout
    assert "status:  complete" in text
    assert f"Notice: {api['model']['notice']}" in text
    for item in api["labels"]:
        row = next(line for line in text.splitlines() if line.startswith(item["label"] + " "))
        cells = row.split()
        assert float(cells[1]) == pytest.approx(item["probability"], abs=5e-4)
        assert float(cells[2]) == pytest.approx(item["threshold"], abs=5e-4)
        assert cells[3] == ("POSITIVE" if item["positive"] else "negative")
        assert cells[4] == str(item["slicesAboveThreshold"])
        assert cells[-1] == item["maxSlice"]["sopInstanceUID"]

    listed = ichctl("worklist", "--json", "--page-size", "1", server=server, token=read)
    assert listed.returncode == 0, listed.stderr
    worklist = json.loads(listed.stdout)
    api_list = server.client(read).get("/v1/studies?limit=200").json()
    assert [s["studyInstanceUID"] for s in worklist["studies"]] == [s["studyInstanceUID"] for s in api_list["studies"]]
    assert {study_a[0].study, study_b[0].study} <= {s["studyInstanceUID"] for s in worklist["studies"]}
    assert worklist["nextCursor"] is None
    assert worklist["model"] == api_list["model"]

    limited = ichctl("worklist", "--json", "--limit", "1", "--page-size", "1", server=server, token=read)
    assert len(json.loads(limited.stdout)["studies"]) == 1

    positive = ichctl("worklist", "--json", "--positive", server=server, token=read)
    api_positive = server.client(read).get("/v1/studies?positive=true").json()
    assert [s["studyInstanceUID"] for s in json.loads(positive.stdout)["studies"]] == \
        [s["studyInstanceUID"] for s in api_positive["studies"]]

    rows = ichctl("worklist", server=server, token=read)
    assert rows.returncode == 0
    assert study_a[0].study in rows.stdout and "Notice: " in rows.stdout


def test_wait_times_out_with_exit_3_and_unknown_study_is_exit_2(server):
    read = server.tokens["read"]
    start = time.monotonic()
    result = ichctl("wait", "1.2.826.0.1.3680043.8.498.424242", "--timeout", "1.5", server=server, token=read)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert time.monotonic() - start < 10
    missing = ichctl("study", "1.2.826.0.1.3680043.8.498.424242", server=server, token=read)
    assert missing.returncode == 2 and "Not found" in missing.stderr


def test_wrong_token_and_unreachable_server_are_exit_2(server, pushed, tmp_path):
    root, *_ = pushed
    refused = ichctl("push", str(root / "b"), server=server, token="not-a-token")
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert "refused the token (HTTP 401)" in refused.stderr
    wrong_scope = ichctl("push", str(root / "b"), server=server, token=server.tokens["read"])
    assert wrong_scope.returncode == 2 and "HTTP 403" in wrong_scope.stderr
    query = ichctl("worklist", server=server, token="not-a-token")
    assert query.returncode == 2 and "HTTP 401" in query.stderr

    unreachable = ichctl("push", str(root / "b"), "--server", "http://127.0.0.1:9", "--token", "x",
                         "--retries", "1", "--max-retry-wait", "0.1")
    assert unreachable.returncode == 2, (unreachable.stdout, unreachable.stderr)
    assert "network: " in unreachable.stdout  # the failure reason in the summary
    no_token = ichctl("worklist", "--server", server.base_url)
    assert no_token.returncode == 2 and "ICH_TOKEN" in no_token.stderr
    from_env = ichctl("worklist", env={"ICH_SERVER_URL": server.base_url, "ICH_TOKEN": server.tokens["read"]})
    assert from_env.returncode == 0, from_env.stderr


def test_requests_over_the_servers_body_limit_are_split(tmp_path):
    """--max-request-bytes above the server's --max-body-bytes: each 413 splits the
    request in two until the parts fit; a single file over the limit fails alone."""
    require_binaries()
    srv = Server(tmp_path / "data", service.test_bundle(), args=SERVER_ARGS + ["--max-body-bytes", "300000"],
                 log_path=tmp_path / "server.log")
    token = srv.token("ingest")
    folder = tmp_path / "pacs"
    folder.mkdir()
    files = make_study(6, rows=256, cols=256, seed=4)  # about 130 KB each: two fit in a request, three do not
    for k, f in enumerate(files):
        (folder / f"s{k}.dcm").write_bytes(f.data)
    big = make_study(1, rows=512, cols=512, seed=5)[0]  # about 520 KB: over the limit on its own
    (folder / "big.dcm").write_bytes(big.data)
    with srv:
        result = ichctl("push", str(folder), "--json", server=srv, token=token, timeout=120)
        stored = {sop for sop in (f.sop for f in files)
                  if srv.client(srv.token("read")).get(f"/v1/instances/{sop}").status == 200}
    assert result.returncode == 1, (result.stdout, result.stderr)
    counts = summary(result)
    assert counts["stored"] == 6 and stored == {f.sop for f in files}, (counts, result.stderr)
    assert counts["failedByReason"] == {"HTTP 413 body-too-large": 1}, counts
    assert counts["requests"] >= 4, counts  # the first request and at least one split
    assert "over the server's body limit (413)" in result.stderr


def test_overloaded_server_is_retried_then_reported_failed(tmp_path):
    require_binaries()
    srv = Server(tmp_path / "data", service.test_bundle(), args=SERVER_ARGS + ["--queue-hard-limit", "0"],
                 log_path=tmp_path / "server.log")
    token = srv.token("ingest")
    with srv:
        files = make_study(2, seed=3)
        for k, f in enumerate(files):
            (tmp_path / f"s{k}.dcm").write_bytes(f.data)
        start = time.monotonic()
        result = ichctl("push", str(tmp_path / "s0.dcm"), str(tmp_path / "s1.dcm"), "--json", "--retries", "2",
                        "--max-retry-wait", "0.2", server=srv, token=token)
        elapsed = time.monotonic() - start
    assert result.returncode == 1, (result.stdout, result.stderr)
    counts = summary(result)
    assert counts["failed"] == 2 and counts["failedByReason"] == {"HTTP 503 overloaded": 2}
    # Two retries, each after the server's Retry-After (5 s) cut to --max-retry-wait.
    assert result.stderr.count("HTTP 503 overloaded; try") == 2, result.stderr
    assert "try 3 in 0.2 s" in result.stderr
    assert elapsed < 10


def test_progress_is_one_updating_line_on_a_terminal(server, pushed):
    import pty

    root, *_ = pushed
    master, slave = pty.openpty()
    try:
        command = [str(service.ichctl_binary()), "push", str(root / "b"), "--max-request-bytes", "10KiB",
                   "--server", server.base_url, "--token", server.tokens["ingest"]]
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=slave, timeout=60)
        os.close(slave)
        slave = None
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert result.returncode == 0, shown
    text = shown.decode()
    assert text.count("\r\x1b[K[") == 3, repr(text)  # drawn at the start and after each of the 2 requests
    assert "2/2 instances, 2/2 requests, 0 failed" in text
    assert "request 1/2" not in text  # no plain per-request lines on a terminal
    assert b"duplicates: 2" in result.stdout
