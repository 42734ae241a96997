"""Which code made a run: provenance lines for starts and resumes."""

import json
import subprocess

from baorl.provenance import code_version, record_provenance


def test_provenance_names_this_checkout_and_appends_one_line_per_event(tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    v = code_version()
    if head.returncode == 0:  # a git checkout (CI clones the repository): the commit is HEAD's
        assert v["commit"] == head.stdout.strip() and isinstance(v["dirty"], bool)
    else:
        assert v["commit"] is None
    record_provenance(tmp_path / "run", "start")
    record_provenance(tmp_path / "run", "resume", from_step=3)
    rows = [json.loads(x) for x in (tmp_path / "run" / "provenance.jsonl").read_text().splitlines()]
    assert [r["event"] for r in rows] == ["start", "resume"] and rows[1]["from_step"] == 3
    assert all(r["commit"] == v["commit"] and r["version"] == v["version"] and r["argv"] for r in rows)
