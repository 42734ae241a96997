"""Which code made a run: one line per start or resume in ``RUN/provenance.jsonl``.

A long experiment is resumed across sessions, possibly on newer code; each start and resume
appends ``{"event", "time", "commit", "dirty", "version", "argv"}`` so a result can name the
commit every part of it ran on. ``commit`` is the git commit of the checkout baorl is imported
from (None for an installed wheel), ``dirty`` whether its tracked files had changes then.

>>> import tempfile, json
>>> d = tempfile.mkdtemp()
>>> row = record_provenance(d, "start")
>>> json.loads(open(f"{d}/provenance.jsonl").read())["event"]
'start'
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["code_version", "record_provenance", "set_command"]

_COMMAND: list[str] | None = None


def set_command(argv: list[str]) -> None:
    """The command being run (`baorl.cli.main.main` sets it; else the process's argv is recorded).

    It also pins `code_version` now, at the command's start: the code a process runs is the code it
    loaded, even if the checkout moves on before an event is recorded (an evaluation records its
    event when it ends, hours later)."""
    global _COMMAND
    _COMMAND = list(argv)
    code_version()


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """``{"commit", "dirty", "version"}`` of the baorl code running now: read once per process, on the
    first call (`set_command`, or the start of a run or an evaluation), and kept."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("baorl")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        __version__ = None
    src = Path(__file__).resolve().parent
    commit, dirty = None, None
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            commit = out.stdout.strip()
            st = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
            dirty = bool(st.stdout.strip()) if st.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"commit": commit, "dirty": dirty, "version": __version__}


def record_provenance(run_dir: str | Path, event: str, **extra: Any) -> dict[str, Any]:
    """Append one provenance line (`event`: start, resume, ...) to ``run_dir/provenance.jsonl``."""
    row = {"event": event, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **code_version(),
           "argv": _COMMAND or [Path(sys.argv[0]).name, *sys.argv[1:]], **extra}
    path = Path(run_dir) / "provenance.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    return row
