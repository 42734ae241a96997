"""`baorl serve`: an OpenAI-compatible chat-completions server for a local model.

Serve the embedded SmolLM2 (or any local checkpoint) so that anything speaking OpenAI's API can
use it: ``openai:MODEL`` agents, the LLM user simulators (``--simulator openai:embedded``), or
other tools::

    baorl serve embedded --port 8000
    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 baorl play telepathy --simulator openai:embedded

The heavy modules (torch, transformers, FastAPI) load only when a server starts; importing this
package to build the CLI costs nothing.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

__all__ = ["add_serve_parser", "serve_main", "cmd_serve", "API_KEY_ENV"]

#: environment variable read for ``--api-key`` (safer than a key on the command line)
API_KEY_ENV = "BAORL_SERVE_API_KEY"


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to a `baorl` subparsers object; it runs `cmd_serve`."""
    p = subparsers.add_parser(
        "serve", help="serve a local model over an OpenAI-compatible chat-completions API",
        description="Serve a local model (embedded, or a transformers checkpoint directory) at "
                    "POST /v1/chat/completions, GET /v1/models and GET /health. Binds 127.0.0.1 "
                    "unless --host says otherwise.",
    )
    p.add_argument("model", help="'embedded' or a local checkpoint directory")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything else exposes the model to the network)")
    p.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    p.add_argument("--chat-template", default="auto", metavar="NAME",
                   help="auto (default), native, chatml-tools or qwen3")
    p.add_argument("--served-model-name", metavar="NAME", default=None,
                   help="the model id clients send (default: MODEL as given)")
    p.add_argument("--max-batch", type=int, default=8, help="most requests generated in one batch (default 8)")
    p.add_argument("--batch-wait-ms", type=float, default=10.0,
                   help="how long to gather concurrent requests into a batch, in ms (default 10)")
    p.add_argument("--max-tokens-default", type=int, default=1024,
                   help="max_tokens for requests that give none (default 1024)")
    p.add_argument("--max-body-mb", type=float, default=4.0, metavar="MB",
                   help="largest request body accepted, in MiB; larger ones get HTTP 413 (default 4)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}; unset: no key needed)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="precision of the weights (default auto: bfloat16 where the CPU/GPU has bf16 units, "
                   "else float32)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)
    return p


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the server from parsed arguments (blocks until interrupted)."""
    from baorl.models.precision import resolve_dtype
    from baorl.serve.app import run_server

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    if args.max_batch < 1:
        raise ValueError(f"--max-batch must be >= 1, got {args.max_batch}")
    if args.batch_wait_ms < 0:
        raise ValueError(f"--batch-wait-ms must be >= 0, got {args.batch_wait_ms}")
    if not 0 < args.max_body_mb < float("inf"):
        raise ValueError(f"--max-body-mb must be a number > 0, got {args.max_body_mb}")
    run_server(
        args.model, args.host, args.port, chat_template=args.chat_template,
        served_model_name=args.served_model_name, max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        default_max_tokens=args.max_tokens_default, device=args.device,
        dtype=resolve_dtype(args.dtype, args.device, what="served model"),
        log_level=args.log_level, max_body_bytes=max(1, int(args.max_body_mb * 2**20)),
    )
    return 0


def serve_main(argv: list[str] | None = None) -> int:
    """``baorl serve`` as a standalone entry point: ``serve_main(["embedded", "--port", "8001"])``."""
    ap = argparse.ArgumentParser(prog="baorl")
    add_serve_parser(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(["serve", *(argv or [])])
    return args.func(args)
