"""The load benchmark's moving parts (bench/load.py), without wrk: the signed requests, the Lua
script wrk would load, reading wrk's result, /proc accounting and the report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from twilio.request_validator import RequestValidator

from bench import load
from bot.simulator import load_customer_rows


def lua_unquote(literal: str) -> str:
    """What Lua reads from a string literal written by load.lua_string."""
    assert literal.startswith('"') and literal.endswith('"')
    raw = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1))), literal[1:-1])
    return raw.encode("latin-1").decode()


def test_every_request_is_a_signed_first_here_from_a_different_customer() -> None:
    rows = load_customer_rows(3)
    requests = load.sms_requests(rows, first=10)
    validator = RequestValidator(load.TOKEN)
    assert [r.method for r in requests] == ["POST"] * 3
    forms = []
    for request in requests:
        params = dict(parse_qsl(request.body))
        assert request.path == "/sms"
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert validator.validate(
            f"{load.PUBLIC}/sms", params, request.headers["X-Twilio-Signature"]
        )
        forms.append(params)
    assert [f["From"] for f in forms] == [phone for phone, _, _ in rows]
    assert [f["MessageSid"] for f in forms] == [f"SM{n:032d}" for n in (10, 11, 12)]
    assert all(f["Body"] == "HERE" for f in forms)


def test_simulator_requests_check_in_by_personal_id() -> None:
    requests = load.checkin_requests(load_customer_rows(3))
    assert [r.path for r in requests] == ["/Appointments/Checkin"] * 3
    assert '"PersonalId": "L000003"' in requests[2].body


def test_the_lua_script_holds_each_request_once_and_counts_replies(tmp_path: Path) -> None:
    requests = load.sms_requests(load_customer_rows(3))
    markers = load.reply_markers()
    assert "we&apos;ll" not in markers["holding"][0]  # TwiML escapes only & < >
    assert any("taking a little longer" in text for text in markers["holding"])
    assert any("Please see reception" in text for text in markers["apology"])
    script = load.write_lua(
        tmp_path / "r.lua",
        requests,
        threads=2,
        wrap=False,
        overflow_path="/healthz",
        markers=markers,
        chunk=2,
    )
    text = script.read_text(encoding="ascii")
    adds = [line for line in text.splitlines() if line.startswith("add(")]
    assert len(adds) == 3 and text.count(";(function()") == 2  # chunks of two
    for line, request in zip(adds, requests, strict=True):
        literals = re.findall(r'"(?:[^"\\]|\\\d{3})*"', line)
        assert lua_unquote(literals[-1]) == request.body
        assert lua_unquote(literals[-2]) == request.headers["X-Twilio-Signature"]
    assert "nthreads = 2" in text and "wrap = false" in text
    for function in ("setup", "init", "request", "response", "done"):
        assert f"function {function}(" in text
    assert "wrk.thread:stop()" in text


def test_lua_strings_survive_quotes_backslashes_and_unicode() -> None:
    for text in ['say "hi"', "back\\slash", "new\nline", "Zoë 👍", "100%"]:
        assert lua_unquote(load.lua_string(text)) == text
        assert load.lua_string(text).isascii()


def test_wrk_results_are_read_from_the_done_line() -> None:
    output = (
        "Running 1s test @ http://127.0.0.1:1/sms\n"
        'BENCH-RESULT {"requests": 300, "duration_us": 2000000, "p50_us": 1500, '
        '"p90_us": 2500, "p99_us": 9000, "max_us": 12000, "mean_us": 1700.5, "connect": 0, '
        '"read": 1, "write": 0, "timeout": 2, "status": 3, "ok": 297, "non2xx": 3, '
        '"ticket": 290, "holding": 4, "apology": 3, "other": 3, "exhausted_threads": 0}\n'
    )
    result = load.parse_wrk(output)
    assert result.rate == 150 and result.p50_ms == 1.5 and result.p99_ms == 9
    assert result.socket_errors == {"connect": 0, "read": 1, "write": 0, "timeout": 2}
    assert result.replies == {"ticket": 290, "holding": 4, "apology": 3, "other": 3}
    with pytest.raises(RuntimeError):
        load.parse_wrk("wrk: no such file")


def test_cpu_and_memory_of_a_process_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = load.process_tree(os.getpid())
        assert tree[0] == os.getpid() and child.pid in tree
        assert load.cpu_seconds(tree) > 0
        assert load.rss_bytes(tree) > load.rss_bytes([os.getpid()]) > 0
    finally:
        child.kill()
        child.wait()


def test_the_report_is_a_markdown_table() -> None:
    def result(requests: int, seconds: float) -> load.WrkResult:
        return load.WrkResult(
            requests,
            seconds,
            10,
            20,
            30,
            40,
            dict.fromkeys(load.SOCKET_ERRORS, 0),
            0,
            {"ticket": requests, "holding": 0, "apology": 0, "other": 0},
            0,
        )

    results = [
        load.Measurement("echo", 1, result(3000, 1), result(100, 1), 1.5, 40 * 2**20),
        load.Measurement(
            "bot, sqlite",
            1,
            result(30, 1),
            result(10, 1),
            1.0,
            90 * 2**20,
            checkins=30,
            checkin_calls=31,
            log_problems=Counter({"WARNING checkin_bot.service: slow": 2}),
        ),
    ]
    report = load.markdown(results, "python3 -m bench.load", ["2 cores"])
    assert (
        "| bot, sqlite | 1 | 30.0 | 10.0 ms | 30.0 ms | 10.00 ms | 33.33 ms | 90 MB | 1.0% |"
        in (report)
    )
    assert "| bot, sqlite | 1 | 30 | 31 | 30 | 30 | 0 | 0 | 0 | 0 | 0/0/0/0 |" in report
    assert "2 x `WARNING checkin_bot.service: slow`" in report


def test_without_wrk_the_benchmark_says_so_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(load.shutil, "which", lambda name: None)
    assert load.main(["--backend", "sqlite", "--seconds", "1"]) == 2
    assert "needs wrk" in capsys.readouterr().err
