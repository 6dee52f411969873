"""`ich-server serve --retention-days N` as a whole process.

Days cannot pass in a test, so one study is made old the way time would: the server is stopped and the
study's receive and processing times are moved three days back in its SQLite file (python's sqlite3).
Restarted with `--retention-days 1`, the server deletes that study in its first pass (at start) and
keeps the study completed today; the deletion is audited, counted in /metrics, and nothing of the old
study is left in the database or the spool.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402

ARGS = ["--threads", "2", "--stable-age", "1", "--max-delay-ms", "10"]
DAY = 86_400.0


def server(tmp_path, *extra: str, env: dict[str, str] | None = None) -> service.Server:
    problem = service.binary_problem(service.server_binary())
    if problem:
        pytest.fail(problem, pytrace=False)
    return service.Server(tmp_path / "data", service.test_bundle(), args=[*ARGS, *extra], env=env,
                          log_path=tmp_path / "server.log")


def rows(db: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(sql, args).fetchall()


def make_old(db: Path, study: str, seconds: float) -> None:
    """Moves every time of the study `seconds` into the past, as if it had completed then."""
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE studies SET first_received_at = first_received_at - ?, last_received_at = last_received_at - ? "
                           "WHERE study_instance_uid = ?", (seconds, seconds, study))
        connection.execute("UPDATE instances SET received_at = received_at - ?, processed_at = processed_at - ? "
                           "WHERE study_instance_uid = ?", (seconds, seconds, study))
        connection.execute("UPDATE series SET first_received_at = first_received_at - ? WHERE study_instance_uid = ?",
                           (seconds, study))


def test_a_study_older_than_the_retention_is_deleted_at_start_and_a_fresh_one_kept(tmp_path):
    srv = server(tmp_path)
    token = srv.token("admin")
    old, fresh = service.make_study(3, seed=70), service.make_study(2, seed=71)
    srv.start()
    try:
        client = srv.client(token)
        for f in old + fresh:
            assert client.post_instance(f.data).status == 202
        for files in (old, fresh):
            assert client.wait_complete(files[0].study, timeout=120)["status"] == "complete"
        time.sleep(1.0)  # the notifier settles complete studies within a quarter of the stable age
    finally:
        assert srv.stop() == 0, srv.log_tail()
    db = srv.data_dir / "ich.sqlite"
    uid = old[0].study
    assert rows(db, "SELECT received, settled FROM studies WHERE study_instance_uid = ?", uid) == [(3, 3)]
    make_old(db, uid, 3 * DAY)

    srv.args += ["--retention-days", "1"]
    srv.start()
    try:
        client = srv.client(token)
        deadline = time.monotonic() + 30
        while client.get(f"/v1/studies/{uid}").status == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        service.assert_problem(client.get(f"/v1/studies/{uid}"), 404)
        for f in old:
            service.assert_problem(client.get(f"/v1/instances/{f.sop}"), 404)
        kept = client.get(f"/v1/studies/{fresh[0].study}")
        assert kept.status == 200 and kept.json()["status"] == "complete", kept
        metrics = client.get("/metrics").body.decode()
        assert 'ich_retention_deleted_total{kind="studies"} 1' in metrics, metrics
        assert 'ich_retention_deleted_total{kind="slices"} 3' in metrics, metrics
    finally:
        assert srv.stop() == 0, srv.log_tail()
    log = srv.log_text()
    assert "retention on" in log and "retention_days=1" in log, log[-2000:]
    assert "retention pass deleted studies" in log, log[-2000:]
    assert uid not in log, "a study UID reached the log"
    for table in ("studies", "instances", "series", "notifications"):
        assert rows(db, f"SELECT count(*) FROM {table} WHERE study_instance_uid = ?", uid) == [(0,)], table
    assert rows(db, "SELECT count(*) FROM instances WHERE study_instance_uid = ?", fresh[0].study) == [(2,)]
    assert rows(db, "SELECT token_id, action FROM audit WHERE study_instance_uid = ? AND action LIKE 'retention%'", uid) \
        == [(None, "retention-delete-study")]
    assert list((srv.data_dir / "spool").iterdir()) == []


@pytest.mark.parametrize("flag, env, message", [
    (["--retention-days", "0"], None, "retention-days must be a whole number of days from 1 to 36500"),
    ([], {"ICH_RETENTION_DAYS": "-3"}, "retention-days must be a whole number of days from 1 to 36500"),
    ([], {"ICH_RETENTION_DAYS": "30d"}, "ICH_RETENTION_DAYS has a value of the wrong kind"),
])
def test_a_retention_that_is_not_a_positive_number_of_days_is_refused(tmp_path, flag, env, message):
    srv = server(tmp_path, *flag, env=env)
    result = subprocess.run([str(srv.binary), "serve", "--port", "0", "--data-dir", str(srv.data_dir), "--model",
                             str(srv.model), *srv.args], capture_output=True, text=True, timeout=60,
                            env=srv.environment())
    assert result.returncode != 0 and message in result.stderr, result
    assert "listening on" not in result.stdout


def add_expired_studies(db: Path, studies: int, slices: int, at: float) -> None:
    """`studies` complete, settled studies of `slices` results each, all received and processed at `at`."""
    with sqlite3.connect(db) as connection:
        connection.execute(
            "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < ?1) "
            "INSERT INTO studies (study_instance_uid, first_received_at, last_received_at, received, done, settled, assessable) "
            "SELECT '2.25.9.' || k, ?2, ?2, ?3, ?3, ?3, 1 FROM n", (studies, at, slices))
        connection.execute(
            "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < ?1) "
            "INSERT INTO series (study_instance_uid, series_instance_uid, first_received_at) "
            "SELECT '2.25.9.' || k, '2.25.9.' || k || '.1', ?2 FROM n", (studies, at))
        connection.execute(
            "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < ?1), "
            "m(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM m WHERE j < ?2) "
            "INSERT INTO instances (sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid, position, "
            "received_at, state, processed_at, model, p_any, p_epidural, p_intraparenchymal, p_intraventricular, "
            "p_subarachnoid, p_subdural) "
            "SELECT '2.25.9.' || k || '.1.' || j, '2.25.9.' || k, '2.25.9.' || k || '.1', ?3, j * 5.0, ?4, 1, ?4, 'm@1', "
            "0.1, 0.1, 0.1, 0.1, 0.1, 0.1 FROM n, m", (studies, slices, service.CT_IMAGE_STORAGE, at))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_uploads_go_on_while_a_backlog_of_expired_studies_is_deleted(tmp_path):
    """2,000 expired studies of 10 slices (as when retention is first enabled on an old database) are
    deleted while a client uploads slices one by one: each upload waits for at most one batch, so its
    latency during the pass stays near the latency after it."""
    studies, slices = 2_000, 10
    srv = server(tmp_path, "--retention-days", "1")
    token = srv.token("admin")  # creates and migrates the database
    db = srv.data_dir / "ich.sqlite"
    add_expired_studies(db, studies, slices, time.time() - 3 * DAY)
    srv.start(ready=False)
    during: list[float] = []
    after: list[float] = []
    try:
        client = srv.client(token, validate=False)
        deleted = 0
        k = 0
        passed_at = None
        started = time.monotonic()
        while True:
            for f in service.make_study(4, seed=200 + k, rows=32, cols=32):
                t0 = time.monotonic()
                assert client.post_instance(f.data).status == 202
                (during if passed_at is None else after).append(time.monotonic() - t0)
            k += 1
            if passed_at is None:
                metrics = client.get("/metrics").body.decode()
                match = [line for line in metrics.splitlines() if line.startswith('ich_retention_deleted_total{kind="studies"}')]
                deleted = int(float(match[0].split()[-1])) if match else 0
                if deleted == studies:
                    passed_at = time.monotonic()
                assert time.monotonic() - started < 240, f"only {deleted} studies deleted in 240 s"
            elif time.monotonic() - passed_at > 5:
                break
    finally:
        assert srv.stop() == 0, srv.log_tail()
    assert rows(db, "SELECT count(*) FROM studies WHERE study_instance_uid LIKE '2.25.9.%'") == [(0,)]
    assert rows(db, "SELECT count(*) FROM audit WHERE action = 'retention-delete-study'") == [(studies,)]
    figures = {"pass_seconds": round(passed_at - started, 2), "uploads_during": len(during), "uploads_after": len(after),
               "during_p50_ms": round(1000 * percentile(during, 0.5), 1), "during_p99_ms": round(1000 * percentile(during, 0.99), 1),
               "during_max_ms": round(1000 * max(during), 1), "after_p50_ms": round(1000 * percentile(after, 0.5), 1),
               "after_p99_ms": round(1000 * percentile(after, 0.99), 1), "after_max_ms": round(1000 * max(after), 1)}
    print("retention under ingest:", figures)
    # The pass deletes in batches with pauses, so it lasts long enough for many uploads (one transaction
    # for the whole backlog ends within a few uploads, all waiting for it).
    assert len(during) >= 20, figures
    # One batch (8 studies, 80 slices here) commits in tens of milliseconds; an upload that waited for
    # several in a row would show here.
    assert percentile(during, 0.99) < percentile(after, 0.99) + 0.25, figures
    assert max(during) < max(after) + 0.5, figures


def test_a_kill_mid_pass_leaves_whole_studies_and_the_next_start_finishes(tmp_path):
    """kill -9 while a pass works through a backlog: every study is either whole or gone with its audit
    row (batches commit whole), and the pass at the next start deletes the rest."""
    studies, slices = 1_000, 10
    srv = server(tmp_path, "--retention-days", "1")
    srv.token("admin")
    db = srv.data_dir / "ich.sqlite"
    add_expired_studies(db, studies, slices, time.time() - 3 * DAY)
    srv.start(ready=False)
    time.sleep(1.5)
    srv.kill()
    left = rows(db, "SELECT count(*) FROM studies WHERE study_instance_uid LIKE '2.25.9.%'")[0][0]
    audited = rows(db, "SELECT count(*) FROM audit WHERE action = 'retention-delete-study'")[0][0]
    assert 0 < left < studies, f"the kill did not land mid-pass: {left} of {studies} left"
    assert left + audited == studies
    assert rows(db, "SELECT count(*) FROM instances WHERE study_instance_uid LIKE '2.25.9.%'") == [(left * slices,)]
    assert rows(db, "SELECT count(*) FROM series WHERE study_instance_uid LIKE '2.25.9.%'") == [(left,)]
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    srv.start(ready=False)
    try:
        deadline = time.monotonic() + 60
        while rows(db, "SELECT count(*) FROM studies")[0][0] and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        assert srv.stop() == 0, srv.log_tail()
    assert rows(db, "SELECT count(*) FROM instances") == [(0,)]
    assert rows(db, "SELECT count(*) FROM audit WHERE action = 'retention-delete-study'") == [(studies,)]
