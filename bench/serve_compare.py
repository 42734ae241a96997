"""`transformers serve` against `baorl serve`: correctness for baorl's uses, and throughput.

Both servers serve the embedded SmolLM2-135M-Instruct (fp32, CPU) on 127.0.0.1:

- ``baorl serve embedded`` (the reference; every ratio is against it, measured in the same run);
- ``transformers serve CKPT``, where CKPT is the converted embedded checkpoint
  (`baorl.models.loading.resolve_model`) re-dressed the way a thin launcher would have to: a
  directory of symlinks to its weights and tokenizer, plus baorl's ``chatml-tools`` chat template
  as ``chat_template.jinja`` and a Hermes ``response_template`` in ``tokenizer_config.json``
  (transformers' own Qwen2 fallback; without it a Llama-type model's ``<tool_call>`` and
  ``<think>`` text comes back unparsed). ``--stock`` serves the unmodified checkpoint as well;
- optionally (``--cb``) the same with ``--continuous-batching``.

Correctness probes (each sent once to every server, greedy unless noted): the tool-call path (a
prompt the untrained model answers with a copied ``<tool_call>`` block), ``<think>`` as reasoning
content, ``stop``, ``seed`` (two sampled requests with the same seed), ``response_format`` json
mode as `baorl.users.client` sends it, ``tool_choice="required"`` and ``n=2`` (refusals).

Throughput: `baorl.evaluation.evaluate` with ``openai:MODEL`` (an `OpenAIAgent`, as ``baorl eval
--agent openai:MODEL --agent-base-url ...`` runs it) on the first ``--n`` tasks of ``--gym``'s test
split, at most ``--max-new-tokens`` per reply, at concurrency 1 and ``--n``. The servers are measured
alternately (baorl, transformers, [transformers CB], then again) so that a busy machine slows all of
them alike; each row's episode records are kept and compared (tool calls, terminations, and whether
the replies match baorl's). Model loading and server start-up are not timed.

    python bench/serve_compare.py [--n 8] [--max-new-tokens 32] [--gym function] [--cb] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _serving import wait_healthy  # bench/ is the script's directory

HERE = Path(__file__).resolve().parent
TOOL_CALL = '<tool_call>\n{"name": "interact_with_env", "arguments": {"choice": "answer", "content": "42"}}\n</tool_call>'


def adapted_checkpoint(dest: Path) -> Path:
    """The embedded checkpoint as `transformers serve` needs it for baorl: chatml-tools + a response template."""
    from transformers.cli.serving.utils import _RESPONSE_TEMPLATE_FALLBACKS

    from baorl.models.loading import resolve_model
    from baorl.models.templates import CHAT_TEMPLATES

    src = Path(resolve_model("embedded"))
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name not in ("chat_template.jinja", "tokenizer_config.json") and not (dest / f.name).exists():
            os.symlink(f, dest / f.name)
    (dest / "chat_template.jinja").write_text(CHAT_TEMPLATES["chatml-tools"])
    cfg = json.loads((src / "tokenizer_config.json").read_text())
    cfg["response_template"] = next(v for k, v in _RESPONSE_TEMPLATE_FALLBACKS.items() if "qwen2" in k)
    (dest / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    return dest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One server subprocess on 127.0.0.1 (terminated on `stop`)."""

    def __init__(self, label: str, argv: list[str], model: str, log: Path) -> None:
        self.label, self.model, self.port = label, model, _free_port()
        self.argv = [a.replace("{PORT}", str(self.port)) for a in argv]
        self.log = log
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Server:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.proc = subprocess.Popen(self.argv, stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env)
        return self

    def wait_ready(self, timeout: float = 600) -> None:
        if self.proc is None:
            raise RuntimeError(f"{self.label} was not started")
        wait_healthy(self.proc, self.port, self.label, timeout=timeout, log=self.log.read_text)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ---------------------------------------------------------------------------------------- correctness


def probe_cases() -> dict[str, dict[str, Any]]:
    from baorl.gyms.tool import INTERACT_TOOL

    def copy(text: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"Copy this text exactly, with nothing else:\n{text}"}]

    return {
        "tool call (copied <tool_call> text)": dict(messages=copy(TOOL_CALL), tools=[INTERACT_TOOL], temperature=0,
                                                    max_tokens=48),
        "<think> as reasoning_content": dict(messages=copy("<think>easy</think>\nHello"), temperature=0, max_tokens=16),
        "stop=['5']": dict(messages=[{"role": "user", "content": "Count from 1 to 10 separated by commas."}],
                          temperature=0, max_tokens=24, stop=["5"]),
        "max_tokens=3": dict(messages=[{"role": "user", "content": "Tell me a story."}], temperature=0, max_tokens=3),
        "response_format json_object": dict(
            messages=[{"role": "system", "content": "You simulate a user. Reply in JSON."},
                      {"role": "user", "content": 'Was the answer right? Reply as {"correct": true or false}.'}],
            temperature=0, max_tokens=24, response_format={"type": "json_object"}),
        "seed=7, T=1 (1st)": dict(messages=[{"role": "user", "content": "Say a random word."}], temperature=1.0,
                                  seed=7, max_tokens=8),
        "seed=7, T=1 (2nd)": dict(messages=[{"role": "user", "content": "Say a random word."}], temperature=1.0,
                                  seed=7, max_tokens=8),
        "tool_choice='required'": dict(messages=[{"role": "user", "content": "hi"}], tools=[INTERACT_TOOL],
                                       tool_choice="required", temperature=0, max_tokens=4),
        "n=2": dict(messages=[{"role": "user", "content": "hi"}], n=2, temperature=0, max_tokens=4),
    }


def ask(server: Server, kwargs: dict[str, Any]) -> dict[str, Any]:
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY", timeout=300, max_retries=0)
    t0 = time.perf_counter()
    try:
        r = client.chat.completions.create(model=server.model, **kwargs)
    except openai.APIStatusError as e:
        return {"error": f"HTTP {e.status_code}: {str(e.message)[:160]}", "seconds": time.perf_counter() - t0}
    except openai.OpenAIError as e:
        return {"error": f"{type(e).__name__}: {str(e)[:160]}", "seconds": time.perf_counter() - t0}
    finally:
        client.close()
    m = r.choices[0].message
    return {"seconds": time.perf_counter() - t0, "finish": r.choices[0].finish_reason, "choices": len(r.choices),
            "content": m.content, "reasoning": getattr(m, "reasoning_content", None),
            "tool_calls": [(c.function.name, c.function.arguments) for c in (m.tool_calls or [])],
            "completion_tokens": r.usage.completion_tokens if r.usage else None}


def show(reply: dict[str, Any]) -> str:
    if "error" in reply:
        return f"refused: {reply['error']}"
    parts = [f"finish={reply['finish']}"]
    if reply["choices"] != 1:
        parts.append(f"choices={reply['choices']}")
    if reply["tool_calls"]:
        parts.append(f"tool_calls={reply['tool_calls']}")
    if reply["reasoning"] is not None:
        parts.append(f"reasoning={reply['reasoning']!r}")
    parts.append(f"content={reply['content']!r}")
    parts.append(f"tokens={reply['completion_tokens']}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------- throughput


def eval_row(server: Server, gym: str, n: int, conc: int, max_new: int, out: Path) -> dict[str, Any]:
    from baorl.evaluation.run import evaluate
    from baorl.records import read_episodes

    opts = {"base_url": server.base_url, "max_tokens": max_new, "timeout": 1800.0, "max_retries": 0}
    t0 = time.perf_counter()
    evaluate(f"openai:{server.model}", gym, out, limit=n, concurrency=conc, agent_options=opts, n_boot=0,
             report=False)
    seconds = time.perf_counter() - t0
    eps = sorted(read_episodes(out / "episodes.jsonl"), key=lambda e: e.task_id)
    return {"server": server.label, "conc": conc, "seconds": seconds, "episodes": len(eps),
            "turns": sum(len(e.turns) for e in eps),
            "tool_calls": sum(t.choice is not None for e in eps for t in e.turns),
            "terminations": dict(Counter(str(e.termination) for e in eps)),
            "texts": [[t.content for t in e.turns] for e in eps]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gym", default="function", help="gym (embedded test split; offline simulator if any)")
    ap.add_argument("--n", type=int, default=8, help="episodes per row (the first N tasks)")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="max_tokens per reply")
    ap.add_argument("--rounds", type=int, default=1, help="times each (server, concurrency) row is measured")
    ap.add_argument("--cb", action="store_true", help="also transformers serve --continuous-batching")
    ap.add_argument("--stock", action="store_true", help="also probe transformers serve on the unmodified checkpoint")
    ap.add_argument("--skip-probes", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="write every result here")
    args = ap.parse_args()

    import torch

    from baorl.models.loading import resolve_model

    tmp = Path(tempfile.mkdtemp(prefix="serve-compare-"))
    ckpt = adapted_checkpoint(tmp / "smollm2-chatml-tools")
    py, tserve = sys.executable, str(Path(sys.executable).with_name("transformers"))
    common = ["--host", "127.0.0.1", "--port", "{PORT}", "--device", "cpu", "--dtype", "float32"]
    servers = [Server("baorl serve", [py, "-m", "baorl", "serve", "embedded", "--port", "{PORT}", "--max-batch",
                                      str(args.n), "--log-level", "warning"], "embedded", tmp / "baorl.log"),
               Server("transformers serve", [tserve, "serve", str(ckpt), *common], str(ckpt), tmp / "ts.log")]
    if args.cb:
        servers.append(Server("transformers serve --continuous-batching",
                              [tserve, "serve", str(ckpt), *common, "--continuous-batching"], str(ckpt),
                              tmp / "ts-cb.log"))
    extra = []
    if args.stock:
        stock = str(resolve_model("embedded"))
        extra.append(Server("transformers serve (stock checkpoint)", [tserve, "serve", stock, *common], stock,
                            tmp / "ts-stock.log"))
    load0 = os.getloadavg()[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; load average "
          f"{load0:.2f} at start; logs and records under {tmp}", flush=True)
    results: dict[str, Any] = {"probes": {}, "rows": []}
    try:
        for s in servers + extra:
            s.start()
        for s in list(servers + extra):
            try:
                s.wait_ready()
            except RuntimeError as e:  # e.g. continuous batching on a device it does not support
                print(f"{s.label}: not measured ({str(e)[-300:]})", flush=True)
                s.stop()
                (servers if s in servers else extra).remove(s)
                results.setdefault("failed", {})[s.label] = str(e)[-2000:]
        print("servers up: " + ", ".join(f"{s.label} :{s.port}" for s in servers + extra), flush=True)

        if not args.skip_probes:
            for name, kwargs in probe_cases().items():
                print(f"\n[probe] {name}", flush=True)
                for s in servers[:2] + extra:
                    reply = ask(s, kwargs)
                    results["probes"].setdefault(name, {})[s.label] = reply
                    print(f"  {s.label:<38} {reply['seconds']:6.1f}s  {show(reply)}", flush=True)

        if not args.skip_throughput:
            print(f"\n[throughput] {args.n} {args.gym} test tasks, openai: agent, <= {args.max_new_tokens} tokens "
                  "per reply, servers alternating", flush=True)
            for rnd in range(args.rounds):
                for conc in (1, args.n):
                    for s in servers:
                        out = tmp / f"r{rnd}-c{conc}-{s.label.split()[0]}{'-cb' if 'contin' in s.label else ''}"
                        try:
                            row = eval_row(s, args.gym, args.n, conc, args.max_new_tokens, out)
                        except Exception as e:  # noqa: BLE001 (reported, the other servers go on)
                            print(f"  {s.label:<42} c={conc:<2} failed: {type(e).__name__}: {str(e)[:300]}",
                                  flush=True)
                            results.setdefault("failed", {})[f"{s.label} c={conc}"] = f"{type(e).__name__}: {e}"
                            continue
                        results["rows"].append(row)
                        print(f"  {s.label:<42} c={conc:<2} {row['seconds']:7.1f}s  turns={row['turns']} "
                              f"tool_calls={row['tool_calls']} {row['terminations']}", flush=True)
    finally:
        for s in servers + extra:
            s.stop()
    load1 = os.getloadavg()[0]

    rows = results["rows"]
    if rows:
        print(f"\n{'server':<42} {'conc':>4} {'rounds':>6} {'episodes':>8} {'turns':>5} {'tool calls':>10} "
              f"{'seconds':>8} {'episodes/min':>12} {'vs baorl serve':>14} {'same replies':>12}")
        for conc in (1, args.n):
            ref = [r for r in rows if r["conc"] == conc and r["server"] == "baorl serve"]
            ref_rate = sum(r["episodes"] for r in ref) / sum(r["seconds"] for r in ref) if ref else float("nan")
            for s in servers:
                mine = [r for r in rows if r["conc"] == conc and r["server"] == s.label]
                if not mine or not ref:
                    continue
                eps, secs = sum(r["episodes"] for r in mine), sum(r["seconds"] for r in mine)
                same = sum(a == b for r, q in zip(mine, ref, strict=False)
                           for a, b in zip(r["texts"], q["texts"], strict=False))
                print(f"{s.label:<42} {conc:>4} {len(mine):>6} {eps:>8} {sum(r['turns'] for r in mine):>5} "
                      f"{sum(r['tool_calls'] for r in mine):>10} {secs:>8.1f} {eps / secs * 60:>12.2f} "
                      f"{eps / secs / ref_rate:>13.2f}x {same:>6}/{eps}")
    print(f"\nload average {load0:.2f} at start, {load1:.2f} at end on {os.cpu_count()} CPUs"
          + (" (other jobs were loading the CPU: slower and noisier than on an idle machine)"
             if max(load0, load1) > (os.cpu_count() or 1) else ""))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
