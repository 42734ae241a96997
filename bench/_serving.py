"""Shared by the serving benchmarks: wait until a local OpenAI-compatible server answers /health."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


def wait_healthy(proc: subprocess.Popen, port: int, label: str, *, timeout: float = 600,
                 log: Callable[[], str] = lambda: "") -> None:
    """Poll ``http://127.0.0.1:PORT/health`` every 0.5 s until it answers 200; raise if the process
    exits first (with the tail of `log`) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{label} exited: {log()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{label} did not start within {timeout:.0f} s")
        time.sleep(0.5)
