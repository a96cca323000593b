"""Usage accounting and `nimbus advise`: real invocations are counted, their GB-seconds
equal what the REPORT lines billed, the figures survive `kill -9`, and the advice is
priced from the (overridable) price table."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess

import pytest

from apigw_e2e import ECHO_SRC, call
from nimbus_e2e import (NIMBUS_BIN, ROOT, create_function, invoke, make_zip, ok, python_zip,
                        rust_echo_zip, unique_name, wait_until)

REPORT_RE = re.compile(r"REPORT RequestId: \S+\tDuration: [\d.]+ ms\tBilled Duration: (\d+) ms\t"
                       r"Memory Size: (\d+) MB")


def advise(server, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(NIMBUS_BIN), "advise", "--endpoint", server.endpoint, *args],
                          capture_output=True, text=True, timeout=60, check=check)


def advise_json(server, *args: str) -> dict:
    return json.loads(advise(server, "--output", "json", *args).stdout)


def workload(advice: dict, name: str) -> dict:
    found = [w for w in advice["workloads"] if w["name"] == name]
    assert len(found) == 1, [w["name"] for w in advice["workloads"]]
    return found[0]


def billed(inv) -> tuple[int, int]:
    """(billed ms, memory MB) from the invocation's own REPORT line (LogType=Tail)."""
    m = REPORT_RE.search(inv.log)
    assert m, inv.log
    return int(m.group(1)), int(m.group(2))


def stored_invocations(server) -> int:
    """Invocations the flusher has written to the server's SQLite store so far."""
    db = sqlite3.connect(f"file:{server.data_dir / 'state.db'}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute("SELECT value FROM documents WHERE collection IN "
                          "('usage.minutes', 'usage.hours')").fetchall()
    finally:
        db.close()
    return sum(f["invocations"] for (v,) in rows
               for f in json.loads(v).get("functions", {}).values())


def test_advise_reports_the_invocations_and_gb_seconds_that_ran_and_survives_kill_9(nimbus):
    s = nimbus()
    lam = s.lam
    py, rs = unique_name("advpy"), unique_name("advrs")
    create_function(lam, py, python_zip(), MemorySize=256, Timeout=30)
    create_function(lam, rs, rust_echo_zip(), runtime="provided.al2023", MemorySize=512)
    n, m = 5, 3
    reports = {py: [], rs: []}
    for i in range(n):
        inv = invoke(lam, py, {"sleep": 0.05} if i % 2 else {"i": i}, tail=True)
        ok(inv)
        reports[py].append(billed(inv))
    for i in range(m):
        inv = invoke(lam, rs, {"i": i}, tail=True)
        ok(inv)
        reports[rs].append(billed(inv))
    assert {mem for _, mem in reports[py]} == {256} and {mem for _, mem in reports[rs]} == {512}

    def expected_gbs(name):
        return sum(ms * mem for ms, mem in reports[name]) / 1024 / 1000

    def check(advice):
        for name, count in ((py, n), (rs, m)):
            w = workload(advice, name)
            assert w["kind"] == "function"
            assert w["measured"]["invocations"] == count, w
            assert w["measured"]["billed_ms"] == sum(ms for ms, _ in reports[name]), w
            assert w["measured"]["gb_seconds"] == pytest.approx(expected_gbs(name), rel=1e-9, abs=1e-12)
            assert w["measured"]["cold_starts"] >= 1
            assert [o["model"] for o in w["options"]] == ["Lambda", "Fargate", "EC2"]
            assert w["recommendation"] in ("Lambda", "Fargate", "EC2")
            assert w["reasons"], w
            lam_opt = w["options"][0]
            # Lambda's projected bill is the month's requests and GB-s at the table's prices.
            assert lam_opt["monthly_usd"] == pytest.approx(
                w["monthly"]["invocations"] / 1e6 * 0.20 + w["monthly"]["gb_seconds"] * 0.0000166667,
                rel=1e-9)
        assert advice["price_table"]["region"] == "us-east-1"

    advice = advise_json(s, "--window", "all")
    check(advice)
    # A few invocations idle for most of the window: the advice is Lambda, in plain words.
    w = workload(advice, py)
    assert w["recommendation"] == "Lambda", w
    assert re.match(r"spiky, idle \d+ % of the time: Lambda is [\d.]+× cheaper than (Fargate|EC2)",
                    w["reasons"][0]), w["reasons"]

    # The raw usage endpoint agrees.
    status, _, body = s.http("GET", "/_nimbus/usage")
    assert status == 200, body
    usage = {f["function_name"]: f for f in json.loads(body)["functions"]}
    assert usage[py]["invocations"] == n and usage[rs]["invocations"] == m

    # The table names both functions.
    table = advise(s, "--window", "24h").stdout
    assert "WORKLOAD" in table and py in table and rs in table, table

    # Durable: once flushed (about every second), a crash loses nothing.
    wait_until(lambda: stored_invocations(s) == n + m, 15, interval=0.2, what="usage flushed to the store")
    s.kill9()
    s.restart()
    check(advise_json(s, "--window", "all"))
    # New usage after the restart adds to the old.
    ok(invoke(s.lam, py, {"after": "restart"}))
    assert workload(advise_json(s, "--window", "all"), py)["measured"]["invocations"] == n + 1


def test_what_if_scale_and_profile(nimbus):
    s = nimbus()
    fn = unique_name("advwhatif")
    create_function(s.lam, fn, python_zip(), MemorySize=1024)
    for _ in range(3):
        ok(invoke(s.lam, fn, {}))
    base = workload(advise_json(s), fn)
    x10 = workload(advise_json(s, "--scale", "10x"), fn)
    assert x10["measured"] == base["measured"]
    assert x10["monthly"]["invocations"] == pytest.approx(base["monthly"]["invocations"] * 10, rel=0.05)
    assert x10["options"][0]["monthly_usd"] > base["options"][0]["monthly_usd"] * 5
    bh = advise_json(s, "--profile", "business-hours", "--free-tier")
    assert bh["profile"] == "business-hours" and bh["free_tier"] is True
    assert workload(bh, fn)["monthly"]["container_hours"] == 220
    # Long-lived connections rule Lambda out.
    ll = workload(advise_json(s, "--long-lived", fn), fn)
    assert ll["options"][0]["allowed"] is False and ll["recommendation"] != "Lambda"
    assert "long-lived connections: not Lambda" in " ".join(ll["reasons"])
    # Bad input fails before any request, with a clear message.
    bad = advise(s, "--scale", "ten", check=False)
    assert bad.returncode != 0 and "invalid scale" in bad.stderr
    bad = advise(s, "--window", "7y", check=False)
    assert bad.returncode != 0 and "invalid window" in bad.stderr
    status, _, body = s.http("GET", "/_nimbus/advise?profile=bursty")
    assert status == 400 and b"unknown profile" in body


def test_api_gateway_requests_are_counted_per_route(nimbus):
    s = nimbus()
    fn = unique_name("advapi")
    create_function(s.lam, fn, make_zip({"lambda_function.py": ECHO_SRC}), Timeout=10)
    arn = s.lam.get_function(FunctionName=fn)["Configuration"]["FunctionArn"]
    api_id = s.client("apigatewayv2").create_api(Name=unique_name("adv"), ProtocolType="HTTP",
                                                 Target=arn)["ApiId"]
    for i in range(4):
        r = call(s, api_id, "GET", f"/hello/{i}")
        assert r.status == 200, r
    advice = advise_json(s)
    apis = {a["api_id"]: a for a in advice["apis"]}
    assert apis[api_id]["requests"] == 4
    assert apis[api_id]["routes"] == [{"route_key": "$default", "requests": 4}]
    # …and each request was a Lambda invocation.
    assert workload(advice, fn)["measured"]["invocations"] == 4


def test_price_table_override(nimbus, tmp_path):
    table = json.loads((ROOT / "crates/usage/prices/us-east-1-2026.json").read_text())
    table["version"] = "custom-test"
    table["lambda"]["requests_per_million"]["value"] = 2.0
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(table))
    s = nimbus("--prices", str(path))
    fn = unique_name("advprice")
    create_function(s.lam, fn, python_zip(), MemorySize=128)
    ok(invoke(s.lam, fn, {}))
    advice = advise_json(s)
    assert advice["price_table"]["version"] == "custom-test"
    w = workload(advice, fn)
    assert w["options"][0]["monthly_usd"] == pytest.approx(
        w["monthly"]["invocations"] / 1e6 * 2.0 + w["monthly"]["gb_seconds"] * 0.0000166667, rel=1e-9)
    # A malformed table stops the server with a clear error.
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "x", "lambda": {}}')
    r = subprocess.run([str(NIMBUS_BIN), "server", "--listen", "127.0.0.1:0", "--registry-listen",
                        "127.0.0.1:0", "--data-dir", str(tmp_path / "bad-data"), "--prices", str(bad)],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "RUST_BACKTRACE": "0"})
    assert r.returncode != 0
    assert "price table" in r.stderr and "bad.json" in r.stderr and "missing field" in r.stderr, r.stderr
