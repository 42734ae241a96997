"""Simulated users and judges: an OpenAI-compatible LLM simulator, and offline deterministic ones.

A user is named by one string:

- ``none``: no user (Function needs none);
- ``offline``: the gym's offline simulator (Telepathy: attribute tables of the embedded set, exact
  on what the tables cover; Turtle and Intention: sentence-embedding similarity, *approximate*);
- ``openai:MODEL``: any OpenAI-compatible chat-completions endpoint (base URL and key from
  `SimulatorConfig` or ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``).

Which simulators a gym has is said once, by its registry entry (`baorl.gyms.GymSpec`: `offline_user`,
`llm_user`); `make_user` and `user_for` live beside the registry in `baorl.gyms` and are re-exported here.
Users sit above gyms: they may read a gym's data (the offline Telepathy user reads its tables).
"""

from __future__ import annotations

from baorl.gyms import make_user, user_for
from baorl.users.base import IntentionUser, SimulatorError, TelepathyUser, TurtleUser, User, YesNo

__all__ = ["User", "TelepathyUser", "TurtleUser", "IntentionUser", "YesNo", "SimulatorError", "make_user",
           "user_for"]
