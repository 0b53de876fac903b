"""Child processes of the e2e stack: started in their own process group with the parent-death signal, logged to a
file each, and always killed: by `Processes.stop()`, from `atexit`, and on SIGTERM/SIGHUP (turned into SystemExit so
that pytest's finalizers run). Free loopback ports and waiting helpers."""
from __future__ import annotations

import atexit
import functools
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable

from kflowgen import parallel

_LIVE: set["Processes"] = set()
_LOCK = threading.Lock()


class StackError(RuntimeError):
    """A component of the stack did not start or did not become ready; the message has its last log lines."""


@atexit.register
def stop_all() -> None:
    with _LOCK:
        live = list(_LIVE)
    for p in live:
        p.stop()


def _on_signal(signum, _frame):
    stop_all()
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP (a CI timeout, a closed terminal) stop every stack before the process ends; Ctrl-C is
    pytest's KeyboardInterrupt, which runs the fixtures' finalizers. Only handlers nobody else set are replaced."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_signal)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def wait_until(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.25,
               describe: Callable[[], str] | None = None) -> float:
    """Poll check() until true; returns the seconds waited. On timeout, StackError with describe()'s text."""
    t0 = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - t0
        except OSError:
            pass
        if time.monotonic() - t0 > timeout:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}"
                             + (f":\n{describe()}" if describe else ""))
        time.sleep(interval)


class Processes:
    """The children of one stack, in start order; stop() kills them in reverse order. Safe to call more than once."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list = []
        self._lock = threading.Lock()
        with _LOCK:
            _LIVE.add(self)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
              ) -> subprocess.Popen:
        logf = open(self.folder / f"{name}.log", "wb")
        self._logs.append(logf)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                cwd=cwd or self.folder, env=env, start_new_session=True,
                                preexec_fn=functools.partial(parallel.die_with_parent, os.getpid()))
        self.procs[name] = proc
        return proc

    def log(self, name: str, lines: int = 20) -> str:
        try:
            text = (self.folder / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def wait_ready(self, name: str, ready: Callable[[], bool], timeout: float = 120) -> float:
        proc = self.procs[name]

        def check() -> bool:
            if proc.poll() is not None:
                raise StackError(f"{name} exited with status {proc.returncode}:\n{self.log(name)}")
            return ready()

        return wait_until(f"{name} to be ready", check, timeout, describe=lambda: self.log(name))

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    def rss_kib(self) -> dict[str, int]:
        """Resident memory of each live child and its own children (KiB), from /proc."""
        out = {}
        for name, proc in self.procs.items():
            if proc.poll() is None:
                out[name] = _tree_rss(proc.pid)
        return out

    def stop(self) -> None:
        with self._lock:
            for proc in reversed(list(self.procs.values())):
                if proc.returncode is not None:
                    continue
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # throw-away state: nothing to shut down gracefully
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for f in self._logs:
                f.close()
            self._logs.clear()
            with _LOCK:
                _LIVE.discard(self)


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out = []
    for t in tasks:
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
        except OSError:
            pass
    return out


def _tree_rss(pid: int) -> int:
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total
