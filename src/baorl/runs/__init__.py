"""Runs: play text-level agents on gyms and drive `baorl rollout`.

`play.py` is the turn-by-turn episode loop for scripted, human and API agents; `runner.py` is the
`baorl rollout` driver (resume, run identity, one JSONL of episodes) for every agent kind, model
policies included (through `baorl.rollout.hf.HFPolicy`). This package sits above `baorl.agents` and
`baorl.rollout`, which do not import each other.
"""
