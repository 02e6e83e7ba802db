#!/usr/bin/env python3
"""Start-up time and idle memory of a sidecar command, for choosing and checking a build.

    python3 packaging/measure_startup.py --runs 10 -- dist/edgegap-sidecar/edgegap-sidecar
    python3 packaging/measure_startup.py --runs 10 -- python3 -m sidecar

Each run starts `CMD serve` on a free port, measures the time from spawn until GET /healthz
answers 200 (polled every 2 ms), lets it idle for --idle seconds, sums VmRSS over the process
and its descendants (a PyInstaller onefile build is two processes), then stops it with SIGTERM.
Prints the median, min and max of both. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthz(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as handle:
                queue.extend(int(child) for child in handle.read().split())
        except OSError:
            pass
    return found


def rss_kib(pid: int) -> int:
    total = 0
    for each in descendants(pid):
        try:
            with open(f"/proc/{each}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def one_run(command: list[str], idle: float, timeout: float) -> tuple[float, int]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("ARBITRIUM_")}
    env.update(SIDECAR_PORT=str(port), SIDECAR_LOG_LEVEL="warning")
    started = time.perf_counter()
    process = subprocess.Popen(
        [*command, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while not healthz(port):
            if process.poll() is not None:
                raise SystemExit(f"{command} exited {process.returncode} before /healthz")
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"{command}: no /healthz after {timeout} s")
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
        time.sleep(idle)  # a measurement interval, not a wait for an event
        return elapsed, rss_kib(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds idle before RSS")
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("command", nargs="+", help="the sidecar command (without `serve`)")
    args = parser.parse_args()
    command = args.command[1:] if args.command[0] == "--" else args.command
    one_run(command, 0.0, args.timeout)  # warm the page cache; not counted
    times, rss = [], []
    for _ in range(args.runs):
        elapsed, kib = one_run(command, args.idle, args.timeout)
        times.append(elapsed)
        rss.append(kib)
    print(
        f"{' '.join(command)}: start→/healthz median {statistics.median(times) * 1000:.0f} ms "
        f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, n={len(times)}); "
        f"idle RSS median {statistics.median(rss) / 1024:.1f} MiB "
        f"(min {min(rss) / 1024:.1f}, max {max(rss) / 1024:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
