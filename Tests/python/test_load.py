"""The load test of issue 6 in its short form (Tools/load_test.py --quick).

One server with `--queue-hard-limit 24 --max-connections 1200`: a warm-up that
estimates the model's capacity, a few seconds at 1x, 3x (8 uploaders) and 0.5x
that rate, then a well-behaved client during 200 slow-header sockets, 200
slow-body sockets and 1000 idle keep-alive sockets. About 40 s on two cores.
The full run (minutes, the numbers of docs/RELIABILITY.md) is
`python Tools/load_test.py`.

Latencies are printed, never asserted: on a shared two-core machine they say
more about the neighbours than about the server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import service  # noqa: E402

# RSS at the end of the overload phase over RSS after the warm-up. Measured: 1.01 in quick
# runs, 1.03 in both full runs (docs/RELIABILITY.md): the queue is bounded, so only a few MiB
# of request buffers and allocator arenas for a few more threads come and go. 1.5 leaves
# room for allocator noise and still fails on a queue, cache or connection table that grows
# with the number of requests (about 400 in the quick overload).
RSS_GROWTH_LIMIT = 1.5
FD_SLACK = 5  # the sampler's own /metrics connection and a probe may be open at the moment of counting


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    problem = service.binary_problem(service.server_binary())
    if problem:
        pytest.fail(problem, pytrace=False)
    command = [sys.executable, str(REPO_ROOT / "Tools" / "load_test.py"), "--quick", "--json",
               "--work-dir", str(tmp_path_factory.mktemp("load"))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=str(REPO_ROOT))
    output = result.stdout + result.stderr
    assert result.returncode in (0, 1), f"load test could not run (exit {result.returncode}):\n{output[-4000:]}"
    print(result.stdout.rsplit("\n", 2)[0])  # the tables, without the JSON line
    value = json.loads(result.stdout.strip().splitlines()[-1])
    value["_output"] = output[-6000:]
    return value


def phase(summary, name):
    return next(p for p in summary["load"]["phases"] if p["phase"] == name)


def test_overload_is_503_with_retry_after(summary):
    beyond = phase(summary, "beyond capacity")
    assert beyond["statuses"].get("503", 0) > 0, summary["_output"]
    assert beyond["statuses"].get("202", 0) > 0, summary["_output"]  # still accepting what fits
    assert "missing" not in beyond["retry_after"], beyond
    assert all(int(value) >= 0 for value in beyond["retry_after"]), beyond


def test_no_server_error_but_503(summary):
    statuses = Counter()
    for p in summary["load"]["phases"]:
        statuses.update(p["statuses"])
    assert {s for s in statuses if s.startswith("5")} <= {"503"}, statuses
    assert "none" not in statuses, f"uploads without an answer: {statuses}"
    for row in summary["attacks"]["attacks"]:
        for kind, probe in row["probe"].items():
            assert not any(s.startswith("5") for s in probe["failed_with"]), (row["phase"], kind, probe)


def test_every_acknowledged_upload_has_a_result(summary):
    for results in (summary["load"]["results"], summary["final_results"]):
        assert results.get("drained", True), results
        assert results["acknowledged"] > 0, results
        assert results["missing"] == 0 and not results["not_done"] and not results["errors"], results
        assert results["done_metric"] == results["acknowledged"], results


def test_load_recovers_when_it_drops(summary):
    cooldown = summary["load"]["cooldown"]
    after = cooldown["statuses_after_last_503"]
    assert after and set(after) <= {"200", "202"}, cooldown


def test_memory_flat_under_overload(summary):
    load = summary["load"]
    ratio = load["rss_end_overload_mib"] / load["rss_after_warmup_mib"]
    assert ratio <= RSS_GROWTH_LIMIT, (f"RSS {load['rss_after_warmup_mib']} MiB after the warm-up, "
                                       f"{load['rss_end_overload_mib']} MiB at the end of the overload")


def test_fds_return_to_baseline_after_attacks(summary):
    for row in summary["attacks"]["attacks"]:
        if "sockets" not in row:
            continue
        assert row["fds"]["max"] >= row["sockets"]["sockets"] * 0.9, f"the attack did not take hold: {row}"
        assert row["fds_after_close"] <= row["fd_baseline"] + FD_SLACK, row


def test_well_behaved_client_served_during_idle_attack(summary):
    idle = next(row for row in summary["attacks"]["attacks"] if row["phase"] == "idle")
    assert idle["sockets"]["opened"] == idle["sockets"]["sockets"], idle["sockets"]
    for kind, probe in idle["probe"].items():
        assert probe["requests"] > 0, (kind, probe)
        assert probe["failures"] == 0, (kind, probe)


def test_script_reports_no_violation(summary):
    assert not summary["violations"], summary["_output"]
