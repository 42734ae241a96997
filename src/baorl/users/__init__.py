"""Simulated users and judges: an OpenAI-compatible LLM simulator, and offline deterministic ones.

A user is named by one string:

- ``none``: no user (Function needs none);
- ``offline``: the gym's offline simulator (Telepathy: attribute tables of the embedded set, exact
  on what the tables cover; Turtle and Intention: sentence-embedding similarity, *approximate*);
- ``openai:MODEL``: any OpenAI-compatible chat-completions endpoint (base URL and key from
  `SimulatorConfig` or ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``).
"""

from __future__ import annotations

import importlib
from typing import Any

from baorl.users.base import IntentionUser, SimulatorError, TelepathyUser, TurtleUser, User, YesNo

__all__ = ["User", "TelepathyUser", "TurtleUser", "IntentionUser", "YesNo", "SimulatorError", "make_user",
           "user_for"]

# gym -> (offline user, LLM user), as "module:Class"
_USERS: dict[str, tuple[str | None, str | None]] = {
    "function": (None, None),
    "telepathy": ("baorl.users.telepathy_offline:OfflineTelepathyUser", "baorl.users.llm:LLMTelepathyUser"),
    "turtle": ("baorl.users.similarity:OfflineTurtleUser", "baorl.users.llm:LLMTurtleUser"),
    "intention": ("baorl.users.similarity:OfflineIntentionUser", "baorl.users.llm:LLMIntentionUser"),
}


def _load(path: str) -> Any:
    mod, _, cls = path.partition(":")
    return getattr(importlib.import_module(mod), cls)


def make_user(gym: str, spec: str | None, **options: Any) -> Any:
    """Build the user for `gym` from a spec string.

    `options` go to the LLM client (``base_url``, ``api_key``, ``cache_dir``, ``max_retries``,
    ``timeout``, ``concurrency``) or to the offline user.
    """
    from baorl.gyms import spec as gym_spec

    name = gym_spec(gym).name
    offline, llm = _USERS.get(name, (None, None))
    s = (spec or "none").strip()
    if s.lower() == "none":
        if offline or llm:
            raise ValueError(f"gym {name!r} needs a user simulator: use 'offline' or 'openai:MODEL'")
        return None
    if offline is None and llm is None:
        raise ValueError(f"gym {name!r} needs no user simulator; drop the simulator option (got {s!r})")
    if s.lower() == "offline":
        return _load(offline)(**options)
    if s.startswith("openai:") and len(s) > len("openai:"):
        from baorl.users.client import LLMClient

        return _load(llm)(LLMClient(model=s[len("openai:"):], **options))
    raise ValueError(f"unknown simulator {s!r}: use 'offline' or 'openai:MODEL' (e.g. openai:gpt-4o)")


def user_for(gym: str, spec: str | None = None, **options: Any) -> Any:
    """The user `gym` is played with: None for a gym without users, else `spec` (default ``offline``).

    >>> user_for("function") is None
    True
    >>> user_for("function", "offline")
    Traceback (most recent call last):
    ...
    ValueError: gym 'function' needs no simulator; drop the simulator option (got 'offline')
    """
    from baorl.gyms import spec as gym_spec

    name = gym_spec(gym).name
    if _USERS.get(name, (None, None)) == (None, None):
        if spec not in (None, "none"):
            raise ValueError(f"gym {name!r} needs no simulator; drop the simulator option (got {spec!r})")
        return None
    return make_user(name, spec or "offline", **options)
