"""The HTML report opened in a real browser (headless Chromium): it renders, its script runs, its
episode browser is populated, and hostile episode text stays text."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from baorl.evaluation.report import safe_json, write_report
from baorl.evaluation.run import evaluate, load_run
from baorl.records import Episode, Turn, write_episodes

CHROMIUM = "/usr/bin/chromium"
HOSTILE = '</script><script>document.title="pwned"</script><img src=x onerror="document.title=1">'


def chromium(tmp: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (installs Debian's chromium) to test the report")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=3000", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def dump_dom(tmp: Path, url: str) -> str:
    return chromium(tmp, url, "--dump-dom").stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A comparison of the Function solver and a hand-made run whose episode text is hostile."""
    root = tmp_path_factory.mktemp("report")
    evaluate("scripted:function-solver", "function", root / "solver", limit=5, n_boot=100, report=False)
    tasks = [json.loads(line)["task_id"] for line in (root / "solver" / "episodes.jsonl").read_text().splitlines()]
    hostile = root / "hostile"
    eps = [Episode.from_turns(
        gym="function", task_id=t, policy="hand", termination="turn_limit" if i else "solved", success=not i,
        turns=[Turn(choice="action", content=HOSTILE, think=f"thinking {HOSTILE}", feedback=f"feedback {HOSTILE}"),
               Turn(choice="answer", content="42", reward=0.0 if i else 1.0, user_involved=True, feedback="ok")],
    ) for i, t in enumerate(tasks)]
    write_episodes(hostile / "episodes.jsonl", eps)
    (hostile / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in (1, 2, 3)))
    out = root / "cmp" / "report.html"
    write_report([load_run(root / "solver"), load_run(hostile)], out, n_boot=100)
    return out


def test_report_renders_in_chromium(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    chromium(tmp_path, report.as_uri(), f"--screenshot={shot}", "--window-size=1280,1600")
    img = mpimg.imread(shot)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1200
    gray = img[..., :3].mean(axis=2)
    assert gray.std() > 0.05, "the screenshot is blank"
    # the page draws text, tables and plots: many distinct shades, not a flat fill
    assert len(np.unique((gray * 255).astype(int))) > 50


def test_episode_browser_is_populated(report: Path, tmp_path: Path) -> None:
    dom = dump_dom(tmp_path, report.as_uri())
    assert dom.count('class="ep-row"') == 10  # 5 solver + 5 hand-made episodes
    assert "10 of 10 episodes match" in dom
    assert dom.count("<option") >= 2 + 2 + 3 + 3  # run, gym, success and termination filters filled in
    assert 'id="metrics"' in dom and "Training curves" in dom and "data:image/svg+xml;base64," in dom
    # hostile text was not parsed as markup: no injected image or script ran
    assert "<img src=\"x\"" not in dom and "<title>baorl" in dom and "pwned" not in dom.split("</title>")[0]


def test_an_episode_opens_with_its_turns(report: Path, tmp_path: Path) -> None:
    n_solver = 5
    dom = dump_dom(tmp_path, report.as_uri() + f"#ep-{n_solver}")  # the first hand-made episode
    assert 'class="ep-detail"' in dom
    assert dom.count('class="turn') == 2 and 'class="turn user"' in dom
    # think, action, feedback and reward are shown, the hostile text as text
    assert "thinking &lt;/script&gt;&lt;script&gt;" in dom
    assert "[action] &lt;/script&gt;" in dom and "feedback &lt;/script&gt;" in dom and "reward 1" in dom
    assert "onerror" in dom and '<img src="x"' not in dom


def test_plots_are_written_and_not_blank(report: Path) -> None:
    for name in ("report-pareto.png", "report-training.png"):
        img = mpimg.imread(report.parent / name)
        assert img[..., :3].std() > 0.05, name
    assert (report.parent / "report-pareto.svg").read_text().lstrip().startswith("<?xml")


def test_embedded_json_cannot_close_its_script() -> None:
    text = safe_json({"x": HOSTILE + "\u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"x": HOSTILE + "\u2028"}


def test_missing_browser_fails_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(pytest.fail.Exception, match="make browser"):
        chromium(tmp_path, "about:blank")
