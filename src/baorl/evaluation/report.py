"""One self-contained HTML report per run or comparison (`baorl report`, `baorl compare`).

The file needs nothing else: inline CSS and JavaScript, the plots as embedded SVG images, the
episodes as embedded JSON. Sections: the runs, notes (e.g. runs on different tasks), the metrics
table (with 95% intervals and sample counts), the Pareto frontier, Pass@U-k per k, training curves
when a run has a ``metrics.jsonl``, and an episode browser (filter by run, gym, success,
termination and task id; click an episode to read each turn's think, action, feedback and reward).

Episode text is untrusted (model output, simulator replies): the page escapes every string it
writes (``html.escape``), the JSON block escapes ``<``, ``>`` and ``&`` so it cannot close its
``<script>`` element, the browser script builds the DOM with ``textContent`` only, and a
Content-Security-Policy admits only the page's own script and style (by hash) and ``data:`` images.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baorl.evaluation.metrics import N_BOOT, choose_k, pareto_front, score_episodes
from baorl.textcap import MAX_REPORT_CHARS, check_limit, clip_text

if TYPE_CHECKING:  # annotations only: evaluation.run imports this module to write reports
    from baorl.evaluation.run import Run

__all__ = ["write_report", "check_comparable", "summary_rows", "fmt", "fmt_ci", "Report", "safe_json"]


# ---- comparing runs -------------------------------------------------------------------------------
def check_comparable(runs: Sequence[Run]) -> list[str]:
    """Raise if the runs cannot be compared; return notes on what differs but may be compared.

    Errors (ValueError naming the file): a run without episode records; runs whose records cover
    different sets of gyms (records of different gyms mixed in one comparison). Notes: a gym's
    task sets or the simulators differ between runs.
    """
    for r in runs:
        if not r.episodes:
            raise ValueError(f"{r.path}: no episode records to compare (a training run without "
                             "val/step_*/episodes.jsonl?)")
    notes: list[str] = []
    if len(runs) < 2:
        return notes
    ref = runs[0]
    for r in runs[1:]:
        if r.gyms != ref.gyms:
            raise ValueError(f"{r.records}: records of gym(s) {', '.join(r.gyms)}, but {ref.records} has "
                             f"{', '.join(ref.gyms)}; a comparison needs runs of the same gyms")
    for g in ref.gyms:
        tasks = [{e.task_id for e in r.episodes if e.gym == g} for r in runs]
        if any(t != tasks[0] for t in tasks[1:]):
            notes.append(f"{g}: the runs cover different tasks ({', '.join(str(len(t)) for t in tasks)} tasks); "
                         "their numbers are not paired")
        sims = [sorted({e.simulator for e in r.episodes if e.gym == g}) for r in runs]
        if any(s != sims[0] for s in sims[1:]):
            notes.append(f"{g}: the runs used different simulators ({'; '.join(', '.join(s) for s in sims)}); "
                         "offline and LLM simulators' numbers are not comparable")
    return notes


def _unique_labels(runs: Sequence[Run]) -> list[str]:
    labels = [r.label for r in runs]
    for i, r in enumerate(runs):
        if labels.count(r.label) > 1:
            labels[i] = f"{r.path.resolve().parent.name}/{r.label}"
    for i in range(len(labels)):
        if labels.count(labels[i]) > 1:
            labels[i] = f"{labels[i]} #{i + 1}"
    return labels


# ---- tables ---------------------------------------------------------------------------------------
def fmt(v: float | None, digits: int = 3) -> str:
    """A metric for a table: ``'0.512'``, or ``'-'`` when undefined.

    >>> fmt(0.51234), fmt(None)
    ('0.512', '-')
    """
    return "-" if v is None else f"{v:.{digits}f}"


def fmt_ci(ci: Sequence[float | None] | None, digits: int = 2) -> str:
    """A 95% interval: ``'[0.41, 0.60]'``, or ``''`` when there is none.

    >>> fmt_ci([0.4123, 0.6]), fmt_ci([None, None])
    ('[0.41, 0.60]', '')
    """
    if not ci or ci[0] is None:
        return ""
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def simulator_error_note(label: str, metrics: dict[str, Any]) -> str:
    """One line on a run's episodes that ended in ``simulator_error`` (left out of its metrics)."""
    n = metrics["overall"].get("simulator_errors", 0)
    return (f"{label}: {n} episode{'s' if n != 1 else ''} ended in simulator_error and {'are' if n != 1 else 'is'} "
            "left out of the metrics (the simulator failed, not the agent); rerun the same command to play "
            f"{'them' if n != 1 else 'it'} again")


def summary_rows(metrics: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (run, scope): scopes are each gym, then ``overall`` when a run has several gyms.

    Each row: run, scope, n, n_tasks, seeds, the metric values and intervals, Pass@U-1 and
    Pass@U-K, ``frontier`` (whether the run's Pass@U curve in that scope is not dominated) and
    ``simulator_errors`` (episodes left out of the metrics).
    """
    scopes = sorted({g for m in metrics.values() for g in m["gyms"]})
    if len(scopes) > 1:
        scopes.append("overall")
    rows = []
    for scope in scopes:
        curves = {}
        for label, m in metrics.items():
            s = m["overall"] if scope == "overall" else m["gyms"].get(scope)
            if s is not None:
                curves[label] = [v or 0.0 for v in s["pass_at_u"].values()]
        front = set(pareto_front(curves))
        for label, m in metrics.items():
            s = m["overall"] if scope == "overall" else m["gyms"].get(scope)
            if s is None:
                continue
            K = str(m["K"])
            rows.append({
                "run": label, "scope": scope, "n": s["n"], "n_tasks": s["n_tasks"], "seeds": len(s["seeds"]),
                "K": m["K"], "score": s["score"], "score_ci": s["score_ci"], "success": s["success"],
                "success_ci": s["success_ci"], "pass1": s["pass_at_u"]["1"], "pass1_ci": s["pass_at_u_ci"]["1"],
                "passK": s["pass_at_u"][K], "passK_ci": s["pass_at_u_ci"][K], "hypervolume": s["hypervolume"],
                "hypervolume_ci": s["hypervolume_ci"], "user_rate": s["user_rate"], "user_rate_ci": s["user_rate_ci"],
                "rtr": s["rtr"], "rtr_ci": s["rtr_ci"], "user_actions": s["user_actions"],
                "frontier": label in front and len(metrics) > 1, "simulator_errors": s.get("simulator_errors", 0),
                "seed_ci": {k: s.get(f"{k}_seed_ci") for k in ("score", "hypervolume") if f"{k}_seed_ci" in s},
            })
    return rows


# ---- the page -------------------------------------------------------------------------------------
def safe_json(obj: Any) -> str:
    """JSON that can sit inside a ``<script>`` element: no ``<``, ``>``, ``&`` or line separators.

    >>> safe_json({"t": "</script><b>&"})
    '{"t": "\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e\\\\u0026"}'
    """
    text = json.dumps(obj, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _svg_img(svg: bytes, alt: str) -> str:
    return (f'<img class="plot" alt="{html.escape(alt)}" '
            f'src="data:image/svg+xml;base64,{base64.b64encode(svg).decode()}">')


def _episode_data(runs: Sequence[Run], labels: Sequence[str], max_chars: int | None = MAX_REPORT_CHARS
                  ) -> dict[str, Any]:
    """The episode browser's data; each turn's content, think and feedback cut to `max_chars` (marked)."""
    def clip(text: str | None) -> str | None:
        return text if text is None else clip_text(text, max_chars)

    eps = []
    for i, r in enumerate(runs):
        for e in r.episodes:
            eps.append({
                "r": i, "g": e.gym, "id": e.task_id, "s": e.seed, "ok": bool(e.success), "term": e.termination,
                "score": round(e.score, 4), "ua": sum(t.user_involved for t in e.turns), "sim": e.simulator,
                "turns": [{"c": t.choice, "x": clip(t.content), "t": clip(t.think), "f": clip(t.feedback),
                           "w": round(t.reward, 4),
                           "u": bool(t.user_involved)} for t in e.turns],
            })
    return {"runs": list(labels), "episodes": eps}


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:18px 22px 60px}
h1{font-size:22px;margin:6px 0 2px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dce3;padding-bottom:4px}
.sub{color:#5a6472;margin:0 0 10px}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:6px 0}
th,td{border:1px solid #e1e4ea;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#eef1f5;font-weight:600}td.l,th.l{text-align:left}
.ci{color:#6b7482;font-size:11px;display:block}.front{color:#0a7d32;font-weight:700}
.note{background:#fff6dd;border:1px solid #f0d68a;padding:6px 10px;margin:6px 0;border-radius:4px}
img.plot{max-width:100%;background:#fff;border:1px solid #e1e4ea;border-radius:4px;margin:6px 0}
.filters{display:flex;gap:10px;flex-wrap:wrap;align-items:center;margin:8px 0}
.filters label{font-size:13px;color:#39424e}select,input{font:inherit;font-size:13px;padding:2px 4px}
#ep-table{width:100%}#ep-table tbody tr.ep-row{cursor:pointer}#ep-table tbody tr.ep-row:hover{background:#f0f5ff}
.ok{color:#0a7d32;font-weight:700}.no{color:#b3261e}
tr.ep-detail td{background:#fbfcfd;text-align:left;white-space:normal}
.turn{border-left:3px solid #c5cdd8;margin:8px 0;padding:2px 10px}.turn.user{border-left-color:#e8a33d}
.turn .hd{font-weight:600;font-size:12px;color:#39424e}
.turn .lab{font-size:11px;color:#6b7482;text-transform:uppercase;margin-top:4px}
pre{white-space:pre-wrap;word-break:break-word;margin:2px 0;font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;
background:#f3f4f6;padding:4px 6px;border-radius:3px}
button{font:inherit;font-size:13px;margin:8px 0;padding:3px 12px}
""".strip()

_JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("episodes-data").textContent);
  var eps = data.episodes, runs = data.runs, PAGE = 200, limit = PAGE;
  var $ = function (id) { return document.getElementById(id); };
  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }
  function uniq(key) {
    var s = {}; eps.forEach(function (e) { s[key(e)] = true; });
    return Object.keys(s).sort();
  }
  function fill(sel, values, labels) {
    values.forEach(function (v, i) { var o = el("option", null, labels ? labels[i] : v); o.value = v; sel.appendChild(o); });
  }
  fill($("f-run"), runs.map(function (_, i) { return String(i); }), runs);
  fill($("f-gym"), uniq(function (e) { return e.g; }));
  fill($("f-term"), uniq(function (e) { return e.term; }));
  if (runs.length < 2) $("f-run-box").style.display = "none";
  function match(e) {
    var r = $("f-run").value, g = $("f-gym").value, ok = $("f-ok").value, t = $("f-term").value,
        q = $("f-text").value.trim().toLowerCase();
    return (r === "" || String(e.r) === r) && (g === "" || e.g === g) && (t === "" || e.term === t) &&
      (ok === "" || (ok === "yes") === e.ok) && (q === "" || e.id.toLowerCase().indexOf(q) >= 0);
  }
  function turnView(t, i) {
    var d = el("div", "turn" + (t.u ? " user" : ""));
    d.appendChild(el("div", "hd", "turn " + (i + 1) + " \u00b7 " + (t.c === null ? "no valid tool call" : t.c) +
      " \u00b7 reward " + t.w + (t.u ? " \u00b7 user-involved" : "")));
    if (t.t) { d.appendChild(el("div", "lab", "think")); d.appendChild(el("pre", "think", t.t)); }
    d.appendChild(el("div", "lab", "action"));
    d.appendChild(el("pre", "action", t.c === null ? "(none)" : "[" + t.c + "] " + t.x));
    d.appendChild(el("div", "lab", "feedback"));
    d.appendChild(el("pre", "feedback", t.f));
    return d;
  }
  function row(e, idx) {
    var tr = el("tr", "ep-row");
    tr.id = "ep-" + idx;
    var cells = [runs[e.r], e.g, e.id, e.s, null, e.term, e.score, e.turns.length, e.ua];
    cells.forEach(function (c, i) {
      var td = el("td", i < 3 || i === 5 ? "l" : null);
      if (i === 4) { td.appendChild(el("span", e.ok ? "ok" : "no", e.ok ? "\u2713 yes" : "\u2717 no")); }
      else { td.textContent = String(c); }
      tr.appendChild(td);
    });
    var open = null;
    tr.addEventListener("click", function () {
      if (open) { open.remove(); open = null; return; }
      open = el("tr", "ep-detail");
      var td = el("td"); td.colSpan = cells.length;
      td.appendChild(el("div", "sub", "simulator: " + e.sim));
      e.turns.forEach(function (t, i) { td.appendChild(turnView(t, i)); });
      if (!e.turns.length) td.appendChild(el("div", "sub", "no turns"));
      open.appendChild(td);
      tr.after(open);
    });
    return tr;
  }
  function render() {
    var body = $("ep-body"), shown = 0, matched = 0;
    body.replaceChildren();
    eps.forEach(function (e, idx) {
      if (!match(e)) return;
      matched += 1;
      if (shown < limit) { body.appendChild(row(e, idx)); shown += 1; }
    });
    $("ep-count").textContent = matched + " of " + eps.length + " episodes match" +
      (matched > shown ? " (showing the first " + shown + ")" : "");
    $("ep-more").style.display = matched > shown ? "" : "none";
  }
  ["f-run", "f-gym", "f-ok", "f-term"].forEach(function (id) {
    $(id).addEventListener("change", function () { limit = PAGE; render(); });
  });
  $("f-text").addEventListener("input", function () { limit = PAGE; render(); });
  $("ep-more").addEventListener("click", function () { limit += PAGE; render(); });
  // a link such as report.html#ep-12 opens that episode
  var m = /^#ep-(\d+)$/.exec(window.location.hash);
  if (m && +m[1] < eps.length) { limit = Math.max(limit, +m[1] + 1); }
  render();
  if (m && $("ep-" + m[1])) { $("ep-" + m[1]).click(); $("ep-" + m[1]).scrollIntoView(); }
})();
""".strip()


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def _metrics_table(rows: list[dict[str, Any]], compare: bool) -> str:
    e = html.escape
    head = ["run"] * compare + ["gym", "n (tasks)", "score", "success", "Pass@U-1", "Pass@U-K", "hypervolume",
                                "user rate", "RTR (user actions)"] + ["on frontier"] * compare
    out = ["<table id='metrics'><thead><tr>"]
    out += [f"<th class='{'l' if i < 1 + compare else ''}'>{e(h)}</th>" for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")

    def cell(v: float | None, ci: Any) -> str:
        c = fmt_ci(ci)
        return f"<td>{fmt(v)}" + (f" <span class='ci'>{e(c)}</span>" if c else "") + "</td>"

    for r in rows:
        out.append("<tr>")
        if compare:
            out.append(f"<td class='l'>{e(r['run'])}</td>")
        n = f"{r['n']} ({r['n_tasks']})" + (f", {r['seeds']} seeds" if r["seeds"] > 1 else "")
        sim = r.get("simulator_errors", 0)
        if sim:  # left out of every metric: the simulator failed, not the agent
            n += f" + {sim} simulator error{'s' if sim != 1 else ''}"
        out.append(f"<td class='l'>{e(r['scope'])}</td><td>{e(n)}</td>")
        out += [cell(r["score"], r["score_ci"]), cell(r["success"], r["success_ci"]), cell(r["pass1"], r["pass1_ci"]),
                cell(r["passK"], r["passK_ci"]).replace("<td>", f"<td title='K = {r['K']}'>", 1),
                cell(r["hypervolume"], r["hypervolume_ci"]), cell(r["user_rate"], r["user_rate_ci"]),
                cell(r["rtr"], r["rtr_ci"])[:-5] + f" <span class='ci'>({r['user_actions']})</span></td>"]
        if compare:
            out.append(f"<td class='front'>{'&#10003;' if r['frontier'] else ''}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _passk_table(metrics: dict[str, dict[str, Any]]) -> str:
    e = html.escape
    K = max(m["K"] for m in metrics.values())
    out = ["<table id='passk'><thead><tr><th class='l'>run</th><th class='l'>scope</th>"]
    out += [f"<th>k={k}</th>" for k in range(1, K + 1)]
    out.append("</tr></thead><tbody>")
    for label, m in metrics.items():
        scopes = [(g, s) for g, s in sorted(m["gyms"].items())] + ([("overall", m["overall"])] if len(m["gyms"]) > 1
                                                                     else [])
        for scope, s in scopes:
            out.append(f"<tr><td class='l'>{e(label)}</td><td class='l'>{e(scope)}</td>")
            for k in range(1, K + 1):
                v, ci = s["pass_at_u"].get(str(k)), s["pass_at_u_ci"].get(str(k))
                out.append(f"<td title='{e(fmt_ci(ci) or 'no interval')}'>{fmt(v)}</td>")
            out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _runs_table(runs: Sequence[Run], labels: Sequence[str]) -> str:
    e = html.escape
    out = ["<table id='runs'><thead><tr>"]
    out += [f"<th class='l'>{h}</th>" for h in ("run", "path", "kind", "agent", "gyms", "data", "simulator",
                                                  "seeds", "episodes")]
    out.append("</tr></thead><tbody>")
    for r, label in zip(runs, labels, strict=True):
        agent = r.info.get("agent") or ", ".join(sorted({ep.policy for ep in r.episodes})) or "-"
        data = r.info.get("data") or r.info.get("split") or ("val step " + str(r.info["val_step"]) if "val_step" in
                                                             r.info else "-")
        sims = ", ".join(sorted({ep.simulator for ep in r.episodes})) or "-"
        seeds = ", ".join(str(s) for s in sorted({ep.seed for ep in r.episodes})) or "-"
        cells = [label, str(r.records or r.path), r.kind, agent, ", ".join(r.gyms) or "-", str(data), sims, seeds,
                 str(len(r.episodes))]
        out.append("<tr>" + "".join(f"<td class='l'>{e(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


@dataclass
class Report:
    """What `write_report` wrote."""

    html: Path
    plots: list[Path] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def write_report(runs: Sequence[Run], out: str | Path, *, k: int | None = None, n_boot: int = N_BOOT, seed: int = 0,
                 title: str | None = None, max_text_chars: int | None = MAX_REPORT_CHARS,
                 seed_groups: dict[str, Any] | None = None) -> Report:
    """Score `runs` with one shared K and write the HTML report to `out`, its plots beside it.

    Plots: ``OUT_STEM-pareto.{png,svg}`` and, when a run has training curves,
    ``OUT_STEM-training.{png,svg}``. A single training run without validation records gives a
    report of its curves alone. The episode browser embeds at most `max_text_chars` characters of
    each turn's content, think and feedback (a longer text is cut, with a marker giving its
    length; None embeds everything); the records keep the whole text. `seed_groups` (a
    `baorl.evaluation.seeds.group_metrics` result, with its ``pairs`` list of
    `baorl.evaluation.seeds.paired_difference` results) adds a "Training seeds" section of its tables.

    Raises:
        ValueError: runs that cannot be compared (see `check_comparable`), or nothing to report.
    """
    from baorl.evaluation.plots import figure_svg, plot_pareto, plot_training_curves, save_figure

    out = Path(out)
    runs = list(runs)
    if not runs:
        raise ValueError("no runs to report")
    max_text_chars = check_limit(max_text_chars, "max_text_chars")
    with_eps = [r for r in runs if r.episodes]
    if len(runs) > 1 or with_eps:
        notes = check_comparable(runs)
    elif not runs[0].train_metrics:
        raise ValueError(f"{runs[0].path}: nothing to report (no episode records, no metrics.jsonl)")
    else:
        notes = []
    labels = _unique_labels(runs)
    K = k if k is not None else max([choose_k(r.episodes) for r in runs])
    metrics = {lab: score_episodes(r.episodes, K=K, n_boot=n_boot, seed=seed)
               for lab, r in zip(labels, runs, strict=True) if r.episodes}
    rows = summary_rows(metrics) if metrics else []
    for lab, m in metrics.items():
        if m["overall"].get("simulator_errors"):
            notes.append(simulator_error_note(lab, m))
    compare = len(runs) > 1
    stem = out.with_name(out.stem)
    report = Report(out, metrics=metrics, rows=rows, notes=notes)

    import matplotlib.pyplot as plt

    sections: list[str] = []
    e = html.escape
    if metrics:
        fig = plot_pareto(metrics)
        report.plots += save_figure(fig, Path(f"{stem}-pareto"))
        pareto_svg = figure_svg(fig)
        plt.close(fig)
        boot = (f"95% intervals: percentile bootstrap over tasks ({n_boot} resamples, seed {seed})" if n_boot
                else "no intervals (no bootstrap)")
        sections.append(
            f"<h2>Metrics</h2><p class='sub'>K = {K} · {e(boot)} · n = episodes (tasks) · RTR: share of user-involved "
            "actions that raised the reward (their count) · on frontier: Pass@U curve not dominated by another run's"
            f"</p>{_metrics_table(rows, compare)}"
            f"<h2>Pareto frontier</h2>{_svg_img(pareto_svg, 'Pass@U-k against k')}"
            f"<h2>Pass@U-k</h2><p class='sub'>fraction of episodes solved within their first k user-involved "
            f"actions (hover a cell for its interval)</p>{_passk_table(metrics)}")
    if seed_groups is not None:
        from baorl.evaluation.seeds import seed_tables_html

        sections.append("<h2>Training seeds</h2><p class='sub'>policies trained with several training seeds, one "
                        "run per seed</p>" + seed_tables_html(seed_groups, seed_groups.get("pairs", ())))
    curves = {lab: r.train_metrics for lab, r in zip(labels, runs, strict=True) if r.train_metrics}
    fig = plot_training_curves(curves) if curves else None
    if fig is not None:
        report.plots += save_figure(fig, Path(f"{stem}-training"))
        sections.append(f"<h2>Training curves</h2>{_svg_img(figure_svg(fig), 'training curves')}")
        plt.close(fig)
    if with_eps:
        sections.append(
            "<h2>Episodes</h2><div class='filters'>"
            "<label id='f-run-box'>run <select id='f-run'><option value=''>all</option></select></label>"
            "<label>gym <select id='f-gym'><option value=''>all</option></select></label>"
            "<label>success <select id='f-ok'><option value=''>all</option><option value='yes'>yes</option>"
            "<option value='no'>no</option></select></label>"
            "<label>termination <select id='f-term'><option value=''>all</option></select></label>"
            "<label>task id <input id='f-text' type='search' placeholder='contains'></label>"
            "<span id='ep-count' class='sub'></span></div>"
            "<table id='ep-table'><thead><tr><th class='l'>run</th><th class='l'>gym</th><th class='l'>task</th>"
            "<th>seed</th><th>success</th><th class='l'>termination</th><th>score</th><th>turns</th>"
            "<th>user actions</th></tr></thead><tbody id='ep-body'></tbody></table>"
            "<button id='ep-more' type='button'>show more</button>"
            f"<script type='application/json' id='episodes-data'>{safe_json(_episode_data(runs, labels, max_text_chars))}</script>"
            f"<script>{_JS}</script>")

    title = title or ("comparison: " + " vs ".join(labels) if compare else f"run: {labels[0]}")
    note_html = "".join(f"<div class='note'>{e(n)}</div>" for n in notes)
    csp = (f"default-src 'none'; img-src data:; style-src {_csp_hash(_CSS)}; script-src {_csp_hash(_JS)}; "
           "base-uri 'none'; form-action 'none'")
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{csp}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>baorl · {e(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<h1>baorl · {e(title)}</h1><p class='sub'>every metric is computed from the episode records alone "
        "(spec: metrics.md)</p>"
        f"<h2>Runs</h2>{_runs_table(runs, labels)}{note_html}{''.join(sections)}</main></body></html>\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return report
