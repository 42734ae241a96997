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


def _git_stub(run):
    """A stand-in for the `subprocess` module as `baorl.provenance` sees it (nothing else is touched)."""
    from types import SimpleNamespace

    return SimpleNamespace(run=run, SubprocessError=subprocess.SubprocessError)


def test_an_evaluation_names_the_code_it_started_on_not_the_checkout_at_its_end(tmp_path, monkeypatch):
    """An evaluation writes its provenance line when it ends; the commit must be the one it loaded."""
    import baorl.provenance as prov
    from baorl.evaluation import evaluate

    head = {"commit": "a" * 40}

    def fake_git(cmd, **kw):
        out = head["commit"] if "rev-parse" in cmd else ""
        return subprocess.CompletedProcess(cmd, 0, stdout=out + "\n", stderr="")

    monkeypatch.setattr(prov, "subprocess", _git_stub(fake_git))  # provenance's git calls only
    prov.code_version.cache_clear()
    try:
        def checkout_moves_on(_episode):
            head["commit"] = "b" * 40

        evaluate("scripted:function-solver", "function", tmp_path / "ev", split="test", limit=2,
                 on_done=checkout_moves_on, report=False)
        assert head["commit"] == "b" * 40  # the checkout did move while it ran
        (row,) = [json.loads(x) for x in (tmp_path / "ev" / "provenance.jsonl").read_text().splitlines()]
        assert row["event"] == "evaluated" and row["episodes"] == 2 and row["commit"] == "a" * 40
    finally:
        prov.code_version.cache_clear()


def test_the_cli_pins_the_code_version_when_the_command_starts(monkeypatch):
    import baorl.provenance as prov

    calls = []
    monkeypatch.setattr(prov, "subprocess", _git_stub(
        lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0, "c" * 40, "")))
    prov.code_version.cache_clear()
    try:
        prov.set_command(["baorl", "eval"])
        assert calls and prov.code_version.cache_info().currsize == 1
        n = len(calls)
        # later events reuse the pinned version: git is not asked again
        assert prov.code_version()["commit"] == "c" * 40 and len(calls) == n
    finally:
        prov.code_version.cache_clear()
