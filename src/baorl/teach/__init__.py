"""Behaviour enhancement data (spec: bao.md §2): teachers, SFT export, and the behaviour checker.

- `baorl.teach.teachers`: `make_teacher` (programmatic Function solver and Telepathy questioner,
  or any OpenAI-compatible model prompted with `baorl.teach.prompts`);
- `baorl.teach.run`: `teach`, what ``baorl teach`` does: play, keep, write records and SFT files;
- `baorl.teach.export`: episode record -> SFT conversation, and `read_sft_file`;
- `baorl.teach.checker`: how often turns carry memory / hypotheses / plan, repeat a query, or
  answer right after an answer (``baorl behaviour``).
"""

from __future__ import annotations

from baorl.teach.checker import BehaviourReport, check_episode, check_episodes
from baorl.teach.export import episode_to_conversation, read_sft_file
from baorl.teach.run import TeachSummary, export_sft, parse_keep, teach
from baorl.teach.teachers import Teacher, make_teacher

__all__ = [
    "Teacher", "make_teacher", "teach", "export_sft", "parse_keep", "TeachSummary", "episode_to_conversation",
    "read_sft_file", "check_episode", "check_episodes", "BehaviourReport",
]
