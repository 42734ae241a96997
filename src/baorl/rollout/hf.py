"""A local transformers model as a policy (``hf:embedded``, ``hf:PATH``), played by the rollout engine.

Model policies are not text-level `Agent`s: they run many episodes at once through
`baorl.rollout.engine.RolloutEngine`, which records token ids, masks and log-probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from baorl.gyms.base import Gym
from baorl.rollout.engine import EngineConfig, RolloutEngine, Trajectory


class HFPolicy:
    """Load ``hf:NAME`` (``embedded`` or a local checkpoint) and play gyms with it.

    Args:
        spec: the agent string, ``hf:embedded`` or ``hf:PATH_OR_ID`` (the ``hf:`` prefix is optional).
        config: rollout settings (`EngineConfig`); defaults to its defaults.
        dtype: the model's dtype (``float32``, ``bfloat16``, …).
        device: where to run it (``cpu``, ``cuda``, …).
    """

    def __init__(self, spec: str = "hf:embedded", config: EngineConfig | None = None, *, dtype: str = "float32",
                 device: str = "cpu") -> None:
        from baorl.models import load_model

        name = spec[3:] if spec.startswith("hf:") else spec
        if not name:
            raise ValueError("hf: needs a model: hf:embedded or hf:PATH_TO_CHECKPOINT")
        self.name = f"hf:{name}"
        self.model, self.tokenizer = load_model(name, dtype=dtype, device=device)
        self.engine = RolloutEngine(self.model, self.tokenizer, config, name=self.name)

    @property
    def config(self) -> EngineConfig:
        return self.engine.config

    async def arollout(self, gyms: Sequence[Gym], *, seeds: Sequence[int] | None = None,
                       on_episode_done: Callable[[Trajectory], None] | None = None, **kw: Any) -> list[Trajectory]:
        """Play one episode per gym (see `RolloutEngine.arun`)."""
        return await self.engine.arun(gyms, seeds=seeds, on_episode_done=on_episode_done, **kw)

    def rollout(self, gyms: Sequence[Gym], **kw: Any) -> list[Trajectory]:
        """Synchronous `arollout`."""
        return self.engine.run(gyms, **kw)
