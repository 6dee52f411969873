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
