"""Check-ins under load: how many real first check-ins a second the bot takes, next to what a
bare uvicorn app answers and what the VirtualQ simulator takes alone, with public tools only.

    python3 -m bench.load                                  # both backends, 1 worker
    python3 -m bench.load --workers 1 2 --markdown out.md  # and 2 workers; a Markdown copy
    python3 -m bench.load --backend sqlite --seconds 5     # a quick look

Everything runs on 127.0.0.1, each server its own process, loaded by wrk (Debian's `wrk`):
1. echo: bench/echo.py, a fixed TwiML reply with `checkin-bot serve`'s uvicorn options (the
   ceiling: uvicorn and Starlette alone, fed the same signed webhooks);
2. simulator: `python -m bot simulator --load-customers M`, POST Appointments/Checkin for
   distinct PersonalIds (to show VirtualQ's stand-in is not what limits the bot);
3. bot: `checkin-bot migrate`, `directory import` of the simulator's load customers, then
   `python -m bot serve --workers W` on a SQLite file or a throwaway PostgreSQL cluster (as
   the tests start one), a fresh database and simulator for each. Every request is a real
   first check-in of a different customer: a webhook signed as Twilio signs it, for
   PUBLIC_BASE_URL + "/sms", with its own MessageSid, From a directory customer, Body HERE.

wrk cannot sign, so the requests are made here and written to a Lua script (a table wrk.format
turns into raw requests; each wrk thread takes every n-th); a thread that runs out of
customers stops rather than send one twice, and the run is flagged. Each server is warmed up,
then measured one request at a time (`wrk -c1`, p50), then under `--connections` for
`--seconds`: requests/s, p50/p99 (wrk's histogram), the server's CPU seconds per request and
RSS (its whole process tree, from /proc), and what the replies were (a ticket, the holding
reply, an apology, non-2xx, socket errors); for the bot, the check-ins VirtualQ counted.

Numbers depend on the machine, and wrk shares it with the servers: compare runs on one
machine, not across machines. Exit status 2 if wrk is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from types import FrameType
from urllib.parse import urlencode
from xml.sax.saxutils import escape

import httpx
from twilio.request_validator import RequestValidator

from bot import prompts as prompts_module
from bot.simulator import load_customer_rows

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout, put on PYTHONPATH

TOKEN = "bench-load-auth-token"
PUBLIC = "https://checkin.example.org"
TWILIO_NUMBER = "+61400000000"
WARM_UP = 20  # requests each server answers before it is measured
ONE_AT_A_TIME_SECONDS = 5
ONE_AT_A_TIME_MAX = 3000  # customers set aside for the one-at-a-time run
SIMULATOR_CUSTOMERS = 100_000  # the simulator alone takes thousands a second
WRK_TIMEOUT = "30s"  # past Twilio's 15 s: a slow answer is measured, not dropped
BUSY_ELSEWHERE = 0.25  # cores other processes may use before a run is flagged as disturbed
# What a reply was, first match wins; the texts are the prompts', as TwiML escapes them.
REPLY_KINDS = {
    "holding": ("holding", "holding_see_reception"),
    "apology": ("upstream_unavailable", "checkin_not_done", "checkin_unconfirmed"),
}

SOCKET_ERRORS = ("connect", "read", "write", "timeout")  # as wrk counts them
Row = tuple[str, str, str]  # phone, PersonalId, name


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: str


# --- the requests ---------------------------------------------------------------------------


def signature(url: str, params: dict[str, str], token: str = TOKEN) -> str:
    """X-Twilio-Signature as Twilio computes it (as tests/deploy.py signs)."""
    return str(RequestValidator(token).compute_signature(url, params))


def sms_form(phone: str, sid: str, body: str = "HERE") -> dict[str, str]:
    """The fields of Twilio's messaging webhook the bot reads (as tests/helpers.py sends)."""
    return {
        "MessageSid": sid,
        "From": phone,
        "To": TWILIO_NUMBER,
        "Body": body,
        "NumMedia": "0",
        "AccountSid": "AC" + "0" * 32,
    }


def sms_requests(
    rows: Sequence[Row], first: int = 0, token: str = TOKEN, public: str = PUBLIC
) -> list[Request]:
    """A signed "HERE" webhook from each customer; MessageSids numbered from `first` (the
    customer's index in the whole list, so every request of a run has its own)."""
    requests = []
    for number, (phone, _, _) in enumerate(rows, first):
        params = sms_form(phone, f"SM{number:032d}")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature(f"{public}/sms", params, token),
        }
        requests.append(Request("POST", "/sms", headers, urlencode(params)))
    return requests


def checkin_requests(rows: Sequence[Row]) -> list[Request]:
    """POST Appointments/Checkin by PersonalId, the body the bot sends (bot/virtualq.py)."""
    return [
        Request(
            "POST",
            "/Appointments/Checkin",
            {"Content-Type": "application/json"},
            json.dumps({"ForceEarlyLate": False, "PersonalId": pid}),
        )
        for _, pid, _ in rows
    ]


def reply_markers(
    prompts_dir: Path = prompts_module.BUILT_IN, language: str = "en"
) -> dict[str, list[str]]:
    """{kind: [text as it appears in the TwiML]} for the replies that are not a ticket."""
    prompts = prompts_module.load(prompts_dir, language)
    return {kind: [escape(prompts.render(k)) for k in keys] for kind, keys in REPLY_KINDS.items()}


# --- the Lua script -----------------------------------------------------------------------------


def lua_string(text: str) -> str:
    """A Lua string literal of `text`'s UTF-8 bytes (three-digit escapes for anything odd)."""
    out = []
    for byte in text.encode():
        if 32 <= byte < 127 and byte not in (34, 92):
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


LUA_RUNTIME = """
-- Each thread takes every n-th request, so no two threads send the same one.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  mine, sent, exhausted = {}, 0, 0
  ok, non2xx, ticket, holding, apology, other = 0, 0, 0, 0, 0, 0
  for i = id + 1, #all, nthreads do
    local r = all[i]
    mine[#mine + 1] = wrk.format(r[1], r[2], r[3], r[4])
  end
  all = nil
  overflow = wrk.format("GET", overflow_path)
end

function request()
  sent = sent + 1
  if sent > #mine then
    if wrap and #mine > 0 then
      sent = 1
    else
      -- Out of customers: stop this thread rather than send one twice.
      exhausted = 1
      wrk.thread:stop()
      return overflow
    end
  end
  return mine[sent]
end

local function has(body, texts)
  for _, text in ipairs(texts) do
    if string.find(body, text, 1, true) then return true end
  end
  return false
end

function response(status, headers, body)
  if exhausted == 1 then return end
  if status >= 200 and status < 300 then ok = ok + 1 else non2xx = non2xx + 1 end
  if string.find(body, "Ticket", 1, true) then ticket = ticket + 1
  elseif has(body, markers.holding) then holding = holding + 1
  elseif has(body, markers.apology) then apology = apology + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local total = {ok = 0, non2xx = 0, ticket = 0, holding = 0, apology = 0, other = 0,
                 exhausted = 0, prepared = 0}
  for _, t in ipairs(threads) do
    for k, _ in pairs(total) do total[k] = total[k] + (t:get(k) or 0) end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "status": %d, "ok": %d, "non2xx": %d, "ticket": %d, "holding": %d, ' ..
    '"apology": %d, "other": %d, "exhausted_threads": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write,
    e.timeout, e.status, total.ok, total.non2xx, total.ticket, total.holding,
    total.apology, total.other, total.exhausted))
end
"""


def write_lua(
    path: Path,
    requests: Sequence[Request],
    *,
    threads: int,
    wrap: bool,
    overflow_path: str,
    markers: dict[str, list[str]],
    label: str = "",
    chunk: int = 500,
) -> Path:
    """A wrk script sending `requests` (each once unless `wrap`), split among `threads` wrk
    threads; a thread out of requests stops (and GETs `overflow_path`, harmless, once)."""
    lines = [
        f"-- Written by bench/load.py: {label} {len(requests)} pre-built requests,"
        f" {'cycled' if wrap else 'each sent at most once'}, for wrk -t{threads}.",
        f"nthreads = {threads}",
        f"wrap = {'true' if wrap else 'false'}",
        f"overflow_path = {lua_string(overflow_path)}",
        "markers = {"
        + ", ".join(
            f"{kind} = {{{', '.join(lua_string(t) for t in texts)}}}"
            for kind, texts in markers.items()
        )
        + "}",
        "all = {}",
        "local function add(m, p, h, b) all[#all + 1] = {m, p, h, b} end",
    ]
    # Chunks of `chunk` requests, each its own function: Lua caps constants per function.
    for start in range(0, len(requests), chunk):
        lines.append(";(function()")
        for r in requests[start : start + chunk]:
            headers = ", ".join(
                f"[{lua_string(k)}] = {lua_string(v)}" for k, v in r.headers.items()
            )
            lines.append(
                f"add({lua_string(r.method)}, {lua_string(r.path)}, {{{headers}}}, "
                f"{lua_string(r.body)})"
            )
        lines.append("end)()")
    path.write_text("\n".join(lines) + "\n" + LUA_RUNTIME, encoding="ascii")
    return path


# --- wrk ----------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: dict[str, int]
    non2xx: int
    replies: dict[str, int]  # ticket, holding, apology, other
    exhausted_threads: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def parse_wrk(output: str) -> WrkResult:
    line = next((x for x in output.splitlines() if x.startswith("BENCH-RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    r = json.loads(line.removeprefix("BENCH-RESULT "))
    return WrkResult(
        requests=r["requests"],
        seconds=r["duration_us"] / 1e6,
        p50_ms=r["p50_us"] / 1000,
        p90_ms=r["p90_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        max_ms=r["max_us"] / 1000,
        socket_errors={k: r[k] for k in SOCKET_ERRORS},
        non2xx=r["non2xx"],
        replies={k: r[k] for k in ("ticket", "holding", "apology", "other")},
        exhausted_threads=r["exhausted_threads"],
    )


def run_wrk(
    wrk: str, url: str, script: Path, *, threads: int, connections: int, seconds: float
) -> WrkResult:
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={WRK_TIMEOUT}",
        "-s",
        str(script),
        url,
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=seconds + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = output.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{text}")
    return parse_wrk(text)


# --- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def process_tree(pid: int) -> list[int]:
    """`pid` and every process under it (uvicorn's workers are its children)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parents.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(
                    int(entry.name)
                )
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def cpu_seconds(pids: Sequence[int]) -> float:
    """CPU time of these processes (user + system, from /proc/PID/stat), with what their
    exited children used: read on a whole tree before and after, the difference is what the
    tree used meanwhile, PostgreSQL backends that came and went included."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat_fields(pid)
            ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int | None) -> float:
    return cpu_seconds(process_tree(pid)) if pid is not None else 0.0


def machine_busy_seconds() -> float:
    """CPU time every core of the machine spent not idle, since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU time of this process's children that have been waited for (wrk, once it ends)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu() -> dict[int, tuple[str, float]]:
    """Every process's command line and CPU seconds so far (with its waited-for children's)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = _stat_fields(int(entry.name))
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                command = b" ".join(argv).decode(errors="replace").strip()[:80]
                ticks = sum(int(f) for f in fields[11:15])
                found[int(entry.name)] = (command, ticks / os.sysconf("SC_CLK_TCK"))
    return found


def busiest_others(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], ours: set[int]
) -> list[tuple[str, float]]:
    """The processes not ours that used the most CPU between the two readings (seconds)."""
    used = [
        (command, cpu - (before[pid][1] if pid in before else 0.0))
        for pid, (command, cpu) in after.items()
        if pid not in ours
    ]
    return sorted((u for u in used if u[1] > 0), key=lambda u: -u[1])[:3]


def postmaster_pid(port: int) -> int | None:
    """The PostgreSQL server listening on `port` (its backends are its children)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"postgres") and b"-p" in argv:
                if argv[argv.index(b"-p") + 1 :][:1] == [str(port).encode()]:
                    return int(entry.name)
    return None


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def tree(self) -> list[int]:
        return process_tree(self.proc.pid)


class Processes:
    """Every process the benchmark starts, stopped (with its children) whatever happens."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.running: list[Server] = []

    def start(
        self, name: str, argv: list[str], port: int, health: str, env: dict[str, str] | None = None
    ) -> Server:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                env={**self.env, **(env or {})},
                cwd=self.workdir,  # no stray .env is read
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop them in order
            )
        server = Server(name, proc, f"http://127.0.0.1:{port}", log)
        self.running.append(server)
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail(log)}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(server.url + health, timeout=1).status_code == 200:
                    return server
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not come up in 60 s:\n{tail(log)}")
            time.sleep(0.1)

    def stop(self, server: Server) -> None:
        tree = server.tree()
        with contextlib.suppress(ProcessLookupError):
            server.proc.terminate()  # uvicorn stops its workers, after in-flight requests
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
        for pid in tree[1:]:  # any worker left behind, by its id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if server in self.running:
            self.running.remove(server)

    def stop_all(self) -> None:
        for server in reversed(list(self.running)):
            self.stop(server)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Measurement:
    name: str
    workers: int
    load: WrkResult
    one_at_a_time: WrkResult
    cpu_seconds: float
    rss_bytes: int
    checkins: int | None = None  # as VirtualQ (the simulator) counted them during the load run
    checkin_calls: int | None = None  # POST Appointments/Checkin it received, of any outcome
    upstream_cpu_seconds: float | None = None  # the simulator's, behind the bot
    database_cpu_seconds: float | None = None  # PostgreSQL's (SQLite runs inside the bot)
    wrk_cpu_seconds: float = 0.0
    machine_busy_seconds: float = 0.0  # every process on the machine, kernel included
    log_problems: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    disturbed: bool = False  # other processes took CPU the servers could have had

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_seconds / self.load.requests if self.load.requests else 0.0

    @property
    def rest_of_machine_seconds(self) -> float:
        """Busy CPU time no process of the benchmark accounts for: other processes', and the
        kernel's own (loopback networking)."""
        ours = [self.cpu_seconds, self.upstream_cpu_seconds, self.database_cpu_seconds]
        used = sum(x or 0.0 for x in ours) + self.wrk_cpu_seconds
        return max(self.machine_busy_seconds - used, 0.0)


@dataclass
class Options:
    seconds: float
    connections: int
    threads: int
    customers: int
    simulator_customers: int
    wrk: str
    wait_quiet: float = 0.0


class Bench:
    def __init__(self, options: Options, workdir: Path, processes: Processes) -> None:
        self.o, self.workdir, self.processes = options, workdir, processes
        self.markers = reply_markers()
        self.scripts = 0
        self.database_pid: int | None = None  # PostgreSQL's postmaster, when one runs

    def script(
        self, label: str, requests: Sequence[Request], threads: int, wrap: bool, overflow: str
    ) -> Path:
        self.scripts += 1
        return write_lua(
            self.workdir / f"requests-{self.scripts}.lua",
            requests,
            threads=threads,
            wrap=wrap,
            overflow_path=overflow,
            markers=self.markers,
            label=label,
        )

    def warm_up(self, base: str, requests: Sequence[Request]) -> Counter[str]:
        seen: Counter[str] = Counter()
        with httpx.Client(base_url=base, timeout=30) as client:
            for r in requests:
                response = client.request(r.method, r.path, headers=r.headers, content=r.body)
                seen[str(response.status_code)] += 1
        return seen

    def measure(
        self,
        name: str,
        workers: int,
        server: Server,
        requests: Sequence[Request],
        *,
        wrap: bool,
        overflow: str,
        upstream: Server | None = None,
        database: bool = False,
    ) -> Measurement:
        """Warm-up, then one at a time, then the load run, on distinct requests (unless wrap)."""
        o = self.o
        warm, rest = requests[:WARM_UP], requests[WARM_UP:]
        if wrap:
            single, loaded = rest, rest
        else:
            reserve = min(ONE_AT_A_TIME_MAX, len(rest) // 5)
            single, loaded = rest[:reserve], rest[reserve:]
        print(f"  {name}: warm-up ({len(warm)} requests) {dict(self.warm_up(server.url, warm))}")
        if o.wait_quiet:
            wait_until_quiet(o.wait_quiet)
        one = run_wrk(
            o.wrk,
            server.url,
            self.script(f"{name}, one at a time:", single, 1, wrap, overflow),
            threads=1,
            connections=1,
            seconds=ONE_AT_A_TIME_SECONDS,
        )
        print(
            f"  {name}: one at a time: p50 {one.p50_ms:.2f} ms over {one.requests} requests"
            + (" (all it was given)" if one.exhausted_threads else "")
        )
        load_script = self.script(f"{name}, under load:", loaded, o.threads, wrap, overflow)
        before_state = self.sim_state(upstream) if upstream else None
        upstream_pid = upstream.proc.pid if upstream and upstream is not server else None
        database_pid = self.database_pid if database else None

        def clocks() -> list[float]:
            return [
                tree_cpu_seconds(server.proc.pid),
                tree_cpu_seconds(upstream_pid),
                tree_cpu_seconds(database_pid),
                children_cpu_seconds(),  # wrk's, once it has ended
                machine_busy_seconds(),
            ]

        before, everyone = clocks(), process_cpu()
        load = run_wrk(
            o.wrk,
            server.url,
            load_script,
            threads=o.threads,
            connections=o.connections,
            seconds=o.seconds,
        )
        used = [b - a for a, b in zip(before, clocks(), strict=True)]
        ours = {os.getpid(), *server.tree()}
        for pid in (upstream_pid, database_pid):
            ours.update(process_tree(pid) if pid else [])
        others = busiest_others(everyone, process_cpu(), ours)
        rss = rss_bytes(server.tree())
        result = Measurement(name, workers, load, one, used[0], rss)
        result.upstream_cpu_seconds = used[1] if upstream_pid else None
        result.database_cpu_seconds = used[2] if database_pid else None
        result.wrk_cpu_seconds, result.machine_busy_seconds = used[3], used[4]
        elsewhere = result.rest_of_machine_seconds / (load.seconds or 1)
        if elsewhere > BUSY_ELSEWHERE:
            result.disturbed = True
            busiest = "; ".join(f"`{c}` {t / (load.seconds or 1):.2f}" for c, t in others)
            result.notes.append(
                f"{name}, {workers} worker(s): other processes used {elsewhere:.2f} cores "
                f"during the run (busiest: {busiest or 'gone before the end'}): its numbers "
                "are too low; run it again on a quiet machine."
            )
            print(f"  WARNING: {result.notes[-1]}", file=sys.stderr)
        if upstream and before_state is not None:
            after = self.settled_state(upstream)  # with what was in flight when wrk stopped
            result.checkins = after["checkins"] - before_state["checkins"]
            result.checkin_calls = after["checkin_requests"] - before_state["checkin_requests"]
        if load.exhausted_threads:
            note = (
                f"{name}: RAN OUT OF CUSTOMERS: {load.exhausted_threads} wrk thread(s) stopped "
                f"after {load.requests} requests, so its requests/s is too low. Run again with "
                f"more customers (--customers, or --simulator-customers)."
            )
            result.notes.append(note)
            print("!" * 78 + "\n" + note + "\n" + "!" * 78, file=sys.stderr)
        print(
            f"  {name}: {load.rate:.1f} requests/s, p50 {load.p50_ms:.1f} ms, "
            f"p99 {load.p99_ms:.1f} ms, {result.cpu_ms_per_request:.2f} CPU ms/request, "
            f"replies {load.replies}, non-2xx {load.non2xx}, socket errors {load.socket_errors}"
            + (f", check-ins counted by VirtualQ {result.checkins}" if upstream else "")
        )
        return result

    def sim_state(self, simulator: Server) -> dict[str, int]:
        state = httpx.get(f"{simulator.url}/_sim/state", timeout=30).json()
        return {"checkins": state["checkins"], "checkin_requests": state["checkin_requests"]}

    def settled_state(self, simulator: Server, seconds: float = 30) -> dict[str, int]:
        """The simulator's counts once they stop moving (requests wrk left in flight)."""
        deadline = time.monotonic() + seconds
        state = self.sim_state(simulator)
        while time.monotonic() < deadline:
            time.sleep(1)
            now = self.sim_state(simulator)
            if now == state:
                break
            state = now
        return state

    def simulator(self, customers: int) -> Server:
        port = free_port()
        argv = [sys.executable, "-m", "bot", "simulator", "--port", str(port)]
        return self.processes.start(
            "simulator", [*argv, "--load-customers", str(customers)], port, "/_sim/state"
        )

    # --- the three kinds of server ---

    def echo(self, workers: int, requests: Sequence[Request]) -> Measurement:
        port = free_port()
        argv = [sys.executable, "-m", "bench.echo", "--port", str(port)]
        server = self.processes.start(
            f"echo-w{workers}", [*argv, "--workers", str(workers)], port, "/healthz"
        )
        try:
            return self.measure("echo", workers, server, requests, wrap=True, overflow="/healthz")
        finally:
            self.processes.stop(server)

    def simulator_alone(self) -> Measurement:
        rows = load_customer_rows(self.o.simulator_customers)
        server = self.simulator(len(rows))
        try:
            return self.measure(
                "simulator alone",
                1,
                server,
                checkin_requests(rows),
                wrap=False,
                overflow="/_sim/state",
                upstream=server,
            )
        finally:
            self.processes.stop(server)

    def bot(self, backend: str, workers: int, database_url: str) -> Measurement:
        rows = load_customer_rows(self.o.customers)
        simulator = self.simulator(len(rows))
        env = {
            "TWILIO_AUTH_TOKEN": TOKEN,
            "PUBLIC_BASE_URL": PUBLIC,
            "VIRTUALQ_BASE_URL": simulator.url,
            "DATABASE_URL": database_url,
            "LOG_FORMAT": "text",
            "DEFAULT_REGION": "AU",
        }
        name = f"bot, {backend}"
        try:
            csv = self.workdir / "directory.csv"
            csv.write_text("".join(f"{p},{pid},{n}\n" for p, pid, n in rows))
            started = time.perf_counter()
            for command in (["migrate"], ["directory", "import", str(csv)]):
                done = subprocess.run(
                    [sys.executable, "-m", "bot", *command],
                    env={**self.processes.env, **env},
                    cwd=self.workdir,
                    capture_output=True,
                    text=True,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"checkin-bot {command[0]} failed:\n{done.stderr}")
            print(
                f"  {name}: migrated, directory imported ({done.stdout.strip()}) in "
                f"{time.perf_counter() - started:.1f} s"
            )
            port = free_port()
            server = self.processes.start(
                f"bot-{backend}-w{workers}",
                [sys.executable, "-m", "bot", "serve", "--port", str(port)]
                + ["--workers", str(workers)],
                port,
                "/healthz",
                env,
            )
            try:
                log_start = server.log.stat().st_size
                result = self.measure(
                    name,
                    workers,
                    server,
                    sms_requests(rows),
                    wrap=False,
                    overflow="/healthz",
                    upstream=simulator,
                    database=backend == "postgresql",
                )
                result.log_problems = log_problems(server.log, log_start)
            finally:
                self.processes.stop(server)
        finally:
            self.processes.stop(simulator)
        if result.log_problems:
            print(f"  {name}: warnings and errors in its log: {dict(result.log_problems)}")
        return result


_NUMBERS = re.compile(r"\d+(\.\d+)?")


def log_problems(log: Path, start: int = 0) -> Counter[str]:
    """WARNING/ERROR lines of a text log from byte `start` on, by message (numbers blanked)."""
    found: Counter[str] = Counter()
    with log.open("rb") as f:
        f.seek(start)
        for raw in f:
            line = raw.decode(errors="replace")
            match = re.match(r"\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+): (.*?)(?: \[req=.*)?$", line)
            if match:
                level, logger, message = match.groups()
                found[f"{level} {logger}: {_NUMBERS.sub('N', message)[:100]}"] += 1
    return found


# --- databases ----------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (the tests' own, see tests/databases.py): admin URL."""
    from tests.databases import postgres_cluster

    with postgres_cluster() as admin:
        yield admin


def create_postgres_database(admin: str, name: str) -> str:
    import asyncio

    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()

    asyncio.run(create())
    return admin.rsplit("/", 1)[0] + "/" + name


# --- the report -------------------------------------------------------------------------------


def machine() -> list[str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = [f"Python {platform.python_version()}"]
    for package in ("uvicorn", "starlette", "sqlalchemy", "h11", "httptools", "uvloop"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions.append(f"{package} {version(package)}")
    versions.append(f"SQLite {sqlite3.sqlite_version}")
    return [
        f"{os.cpu_count()} cores ({model or platform.machine()}), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB, "
        f"Linux {platform.release()}",
        ", ".join(versions),
    ]


def markdown(results: Sequence[Measurement], command: str, header: Sequence[str]) -> str:
    echo = {r.workers: r.load.rate for r in results if r.name == "echo"}
    lines = [f"`{command}`", "", *[f"- {h}" for h in header], ""]
    lines += [
        "| server | workers | requests/s | p50 | p99 | p50, one at a time | CPU per request "
        "| RSS | vs echo |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = f"{r.load.rate / echo[r.workers]:.1%}" if r.workers in echo else ""
        lines.append(
            f"| {r.name} | {r.workers} | {r.load.rate:,.1f} | {r.load.p50_ms:,.1f} ms "
            f"| {r.load.p99_ms:,.1f} ms | {r.one_at_a_time.p50_ms:,.2f} ms "
            f"| {r.cpu_ms_per_request:,.2f} ms | {r.rss_bytes / 2**20:,.0f} MB | {ratio} |"
        )
    lines += [
        "",
        "| server | workers | responses | check-in calls to VirtualQ | check-ins in VirtualQ "
        "| ticket replies | holding | apology | other | non-2xx "
        "| socket errors (connect/read/write/timeout) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        e = r.load.socket_errors
        checkins = "" if r.checkins is None else f"{r.checkins:,}"
        calls = "" if r.checkin_calls is None else f"{r.checkin_calls:,}"
        replies = r.load.replies
        lines.append(
            f"| {r.name} | {r.workers} | {r.load.requests:,} | {calls} | {checkins} "
            f"| {replies['ticket']:,} | {replies['holding']:,} | {replies['apology']:,} "
            f"| {replies['other']:,} | {r.load.non2xx:,} "
            f"| {e['connect']}/{e['read']}/{e['write']}/{e['timeout']} |"
        )
    lines += [
        "",
        "CPU during each load run, in ms per response (the machine's in cores, on average):",
        "",
        "| server | workers | server | VirtualQ simulator | PostgreSQL | wrk "
        "| rest of the machine | machine busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        n, seconds = r.load.requests or 1, r.load.seconds or 1
        parts = [r.cpu_seconds, r.upstream_cpu_seconds, r.database_cpu_seconds]

        def ms(x: float | None, n: int = n) -> str:
            return "" if x is None else f"{1000 * x / n:,.2f}"

        lines.append(
            f"| {r.name} | {r.workers} | {ms(parts[0])} | {ms(parts[1])} | {ms(parts[2])} "
            f"| {ms(r.wrk_cpu_seconds)} | {ms(r.rest_of_machine_seconds)} "
            f"| {r.machine_busy_seconds / seconds:.2f} cores |"
        )
    notes = [n for r in results for n in r.notes]
    problems = [(r, p, n) for r in results for p, n in r.log_problems.most_common(5)]
    if notes or problems:
        lines.append("")
    lines += [f"- **{n}**" for n in notes]
    lines += [f"- {r.name}, {r.workers} worker(s), log: {n} x `{p}`" for r, p, n in problems]
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------------


def wait_until_quiet(longest: float, quiet_for: int = 5) -> None:
    """Wait (up to `longest` seconds) until the machine has been all but idle `quiet_for`
    seconds in a row: on a shared machine, measure between other people's jobs."""
    deadline, quiet = time.monotonic() + longest, 0
    while quiet < quiet_for and time.monotonic() < deadline:
        busy = machine_busy_seconds()
        time.sleep(1)
        quiet = quiet + 1 if machine_busy_seconds() - busy < BUSY_ELSEWHERE / 2 else 0
    if quiet < quiet_for:
        print(f"  the machine stayed busy for {longest:g} s: measuring anyway", file=sys.stderr)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each load run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1], help="uvicorn workers; several: each"
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--customers", type=int, default=20_000, help="customers for each bot run")
    parser.add_argument(
        "--simulator-customers",
        type=int,
        default=SIMULATOR_CUSTOMERS,
        help="customers for the simulator-alone run",
    )
    parser.add_argument("--skip-simulator", action="store_true", help="no simulator-alone run")
    parser.add_argument(
        "--skip-echo", action="store_true", help="no echo run (a long memory run, say)"
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="measure a server again when other processes took CPU during its run",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each measurement, wait up to this long for other processes to go quiet",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the servers' logs and the Lua scripts"
    )
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the tables here")
    args = parser.parse_args(argv)
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads")
    for name in ("customers", "simulator_customers"):
        if not 100 <= getattr(args, name) <= 999_999:
            parser.error(f"--{name.replace('_', '-')}: 100 to 999,999")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        print(
            "bench.load needs wrk (https://github.com/wg/wrk), which is not on PATH: "
            "install it (Debian/Ubuntu: apt-get install wrk) and run again.",
            file=sys.stderr,
        )
        return 2
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    options = Options(
        args.seconds,
        args.connections,
        args.threads,
        args.customers,
        args.simulator_customers,
        wrk,
        args.wait_quiet,
    )
    command = "python3 -m bench.load " + " ".join(argv if argv is not None else sys.argv[1:])
    header = [
        *machine(),
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; wrk {wrk_version(wrk)}, {args.threads} thread(s),"
        f" {args.connections} connections, {args.seconds:g} s per run",
    ]
    inherited = sorted(k for k in os.environ if k in _setting_names() and k != "PATH")
    if inherited:
        header.append("bot settings from the environment: " + ", ".join(inherited))
    idle_check = machine_busy_seconds()
    time.sleep(1)
    busy = machine_busy_seconds() - idle_check
    if busy > BUSY_ELSEWHERE:
        print(
            f"WARNING: other processes are using {busy:.2f} cores right now: the numbers will "
            "be low and noisy. A quiet machine gives numbers worth comparing.",
            file=sys.stderr,
        )
    previous = signal.signal(signal.SIGTERM, _interrupt)
    results: list[Measurement] = []
    with contextlib.ExitStack() as stack:
        if args.keep:
            workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
            stack.callback(print, f"logs, databases and Lua scripts kept in {workdir}")
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-load-")))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        processes = Processes(workdir, env)
        bench = Bench(options, workdir, processes)
        postgres_admin = None
        if "postgresql" in backends:
            print("starting a throwaway PostgreSQL cluster")
            postgres_admin = stack.enter_context(postgres_server())
            port = httpx.URL(postgres_admin).port
            bench.database_pid = postmaster_pid(port) if port else None
        stack.callback(processes.stop_all)  # first: the servers go before their database
        databases = count(1)

        def bot(backend: str, workers: int) -> Measurement:
            number = next(databases)  # a fresh database each time: every check-in a first
            if backend == "sqlite":
                return bench.bot(backend, workers, f"sqlite:///{workdir / f'bot-{number}.db'}")
            assert postgres_admin is not None
            url = create_postgres_database(postgres_admin, f"bench_{number}")
            return bench.bot(backend, workers, url)

        def measured(what: str, run: Callable[[], Measurement]) -> Measurement:
            """The run, again while other processes disturb it; the least disturbed one."""
            attempts: list[Measurement] = []
            for attempt in range(args.retries + 1):
                print(what if not attempt else f"{what}, again (attempt {attempt + 1})")
                attempts.append(run())
                if not attempts[-1].disturbed:
                    break
            return min(attempts, key=lambda r: r.rest_of_machine_seconds / (r.load.seconds or 1))

        try:
            if not args.skip_simulator:
                results.append(measured("simulator alone", bench.simulator_alone))
            echo_requests = sms_requests(load_customer_rows(5000))
            for workers in args.workers:
                if not args.skip_echo:
                    results.append(
                        measured(
                            f"echo, {workers} worker(s)",
                            functools.partial(bench.echo, workers, echo_requests),
                        )
                    )
                for backend in backends:
                    results.append(
                        measured(
                            f"bot on {backend}, {workers} worker(s)",
                            functools.partial(bot, backend, workers),
                        )
                    )
        except KeyboardInterrupt:
            print("\ninterrupted: stopping every process started", file=sys.stderr)
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
    report = markdown(results, command.strip(), header)
    print("\n" + report)
    if args.markdown:
        args.markdown.write_text(report, encoding="utf-8")
        print(f"written to {args.markdown}")
    return 1 if any(r.notes for r in results) else 0  # ran out of customers, or disturbed


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True)
    first = (done.stdout + done.stderr).split("\n", 1)[0]
    match = re.search(r"wrk (\S+)", first)
    return match.group(1) if match else "?"


def _setting_names() -> set[str]:
    from bot.settings import Settings

    return {name.upper() for name in Settings.model_fields}


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process it started has been stopped", file=sys.stderr)
        sys.exit(130)
