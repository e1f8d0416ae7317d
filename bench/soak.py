"""Soak: ``tether logs -f`` for minutes while the gateway restarts and a writer appends records.

    python -m bench.soak [--minutes 10] [--restart-every 30] [--rate 50]

The gateway runs as its own process (``tether gateway serve``) on one fixed
loopback port and is stopped with SIGTERM (every session gets 1001) and started
again every ``--restart-every`` seconds, with the same state, so the client's API
token stays valid. A writer appends numbered records to the service's log file
the whole time. At the end, once every written record has been printed (or a
grace period passed), the client gets SIGINT and its output is compared with
what was written: every record exactly once, in order. The client's resident
memory (VmRSS of /proc/PID/status) is sampled every few seconds; the summary
gives its maximum and its trend (least-squares slope after the first tenth).

Exits 1 when a record was lost, repeated or reordered, or the client died; 0 otherwise.
Not part of the test suite (it runs for minutes).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.gateway_proc import client_environment, rss_mib
from bench.harness import stop_process
from bench.startup import tether_command

CONFIG = """\
[gateway]
ping_interval = 5
ping_timeout = 10
close_timeout = 2

[services.app]
shell = ["/bin/sh"]

[[services.app.logs]]
files = "logs/*.log"
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    """The gateway process on a fixed port; ``restart()`` stops it by PID and starts it again."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.config = directory / "gateway.toml"
        self.config.write_text(CONFIG, encoding="utf-8")
        self.state = directory / "state"
        self.env = client_environment(directory)
        self.proc: subprocess.Popen[str] | None = None
        self.restarts = 0

    def token(self) -> str:
        done = subprocess.run([*tether_command(), "gateway", "token", "create", "--role",
                               "Viewer", "--name", "soak", "--state-dir", str(self.state)],
                              env=self.env, capture_output=True, text=True, timeout=30,
                              check=True)
        return done.stdout.strip()

    def start(self) -> None:
        deadline = time.monotonic() + 15
        while True:
            proc = subprocess.Popen(
                [*tether_command(), "gateway", "serve", "--config", str(self.config),
                 "--port", str(self.port), "--state-dir", str(self.state)],
                env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if "listening on " in line:
                self.proc = proc
                threading.Thread(target=proc.stdout.read, daemon=True).start()
                return
            stop_process(proc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start on port {self.port}: {line!r}")
            time.sleep(0.2)  # the port may still be held by the previous run

    def restart(self) -> None:
        self.stop()
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@dataclass
class Follower:
    """``tether logs app -f -o json``: record numbers as printed, and its JSON events."""

    proc: subprocess.Popen[bytes]
    seen: list[int] = field(default_factory=list)
    events: list[dict[str, object]] = field(default_factory=list)
    other_lines: int = 0

    def start_readers(self) -> None:
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._err, daemon=True).start()

    def _out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = str(json.loads(line).get("message", ""))
            if message.startswith("soak "):
                self.seen.append(int(message.split()[1]))
            else:
                self.other_lines += 1

    def _err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "text", "line": line.decode(errors="replace")})


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _slope(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB), in MiB per minute."""
    if len(samples) < 2:
        return 0.0
    xs, ys = [s[0] for s in samples], [s[1] for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return 60.0 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def soak(minutes: float, restart_every: float, rate: float, sample_every: float) -> int:
    with tempfile.TemporaryDirectory(prefix="tether-soak-") as tmp:
        directory = Path(tmp)
        logs = directory / "logs"
        logs.mkdir()
        log_file = logs / "app-1.log"
        log_file.write_text("")
        gateway = Gateway(directory, _free_port())
        token = gateway.token()
        gateway.start()
        env = client_environment(directory, TETHER_GATEWAY=f"http://127.0.0.1:{gateway.port}",
                                 TETHER_TOKEN=token, PYTHONUNBUFFERED="1")
        client = subprocess.Popen([*tether_command(), "-o", "json", "logs", "app", "-f"],
                                  env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        follower = Follower(client)
        follower.start_readers()

        written = 0
        stop_writing = threading.Event()

        def write() -> None:
            nonlocal written
            with log_file.open("a") as handle:
                while not stop_writing.is_set():
                    handle.write(f"{_stamp()} soak {written}\n")
                    handle.flush()
                    written += 1
                    stop_writing.wait(1.0 / rate)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        samples: list[tuple[float, float]] = []
        started = time.monotonic()
        end = started + minutes * 60
        next_restart = started + restart_every
        next_sample = started + sample_every
        died = False
        try:
            while time.monotonic() < end:
                now = time.monotonic()
                if client.poll() is not None:
                    died = True
                    break
                if now >= next_sample:
                    rss = rss_mib(client.pid)
                    if rss == rss:  # not NaN
                        samples.append((now - started, rss))
                    next_sample += sample_every
                if now >= next_restart:
                    gateway.restart()
                    next_restart += restart_every
                time.sleep(0.1)
        finally:
            stop_writing.set()
            writer.join(5)
        total = written
        deadline = time.monotonic() + 60
        while not died and len(follower.seen) < total and time.monotonic() < deadline:
            if client.poll() is not None:
                died = True
                break
            time.sleep(0.1)
        time.sleep(1.0)  # anything repeated would arrive now
        if client.poll() is None:
            client.send_signal(signal.SIGINT)
        try:
            status = client.wait(10)
        except subprocess.TimeoutExpired:
            client.kill()
            status = client.wait(5)
        gateway.stop()
        time.sleep(0.2)

    seen = follower.seen
    counts: dict[int, int] = {}
    for n in seen:
        counts[n] = counts.get(n, 0) + 1
    lost = [n for n in range(total) if n not in counts]
    repeated = sum(c - 1 for c in counts.values() if c > 1)
    out_of_order = sum(1 for a, b in itertools.pairwise(seen) if b <= a)
    reconnects = sum(1 for e in follower.events if e.get("event") == "reconnected")
    retries = sum(1 for e in follower.events if e.get("event") == "retry")
    codes = sorted({str(e.get("code")) for e in follower.events if e.get("event") == "retry"})
    steady = samples[len(samples) // 10:]
    rss_values = [mib for _, mib in samples]
    print(f"soak: {minutes:g} min, gateway restarted {gateway.restarts} times "
          f"(every {restart_every:g} s), writer at {rate:g} records/s")
    print(f"records: written {total}, printed {len(seen)}, lost {len(lost)}, "
          f"repeated {repeated}, out of order {out_of_order}, other lines {follower.other_lines}")
    print(f"client: exit {status} ({'died early' if died else 'SIGINT at the end'}), "
          f"reconnects {reconnects}, retries {retries} ({', '.join(codes) or 'none'})")
    if rss_values:
        print(f"memory (VmRSS, {len(samples)} samples every {sample_every:g} s): "
              f"first {rss_values[0]:.1f} MiB, max {max(rss_values):.1f} MiB, "
              f"last {rss_values[-1]:.1f} MiB, trend {_slope(steady):+.3f} MiB/min "
              "after the first tenth")
    if lost:
        print(f"first lost records: {lost[:10]}")
    failed = bool(lost or repeated or out_of_order or died or status != 130)
    print("result: " + ("FAIL" if failed else "ok: every record exactly once, in order"))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--restart-every", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("--rate", type=float, default=50.0, help="records written per second")
    parser.add_argument("--sample-every", type=float, default=2.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    if os.name != "posix" or not Path("/proc/self/status").exists():
        print("bench.soak needs Linux (/proc) for its memory samples", file=sys.stderr)
        return 2
    return soak(args.minutes, args.restart_every, args.rate, args.sample_every)


if __name__ == "__main__":
    raise SystemExit(main())
