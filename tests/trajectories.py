"""Hand-built trajectories for the tests of the advantage paths (TRL, verl, the official formulas)."""

from __future__ import annotations

from baorl.records import Episode, Turn
from baorl.rollout.trajectory import Trajectory


def traj(turns: list[tuple[str | None, float, int]], *, obs: int = 3, termination: str = "turn_limit",
         task: str = "t") -> Trajectory:
    """A Function-gym trajectory: (choice, reward, policy tokens) per turn, `obs` tokens between turns."""
    ids, mask, lps, spans, records = [], [], [], [], []
    for k, (choice, reward, n) in enumerate(turns):
        start = len(ids)
        ids += [100 + k] * n
        mask += [1] * n
        lps += [-0.5] * n
        spans.append((start, start + n))
        if k < len(turns) - 1:
            ids += [7] * obs
            mask += [0] * obs
            lps += [0.0] * obs
        records.append(Turn(choice=choice, reward=reward, user_involved=choice == "action"))
    ep = Episode.from_turns(turns=records, gym="function", task_id=task, termination=termination,
                            success=termination == "solved")
    return Trajectory(ep, [1, 2, 3], ids, mask, lps, spans)
