"""The episode record: the one file format every baorl tool reads and writes.

Rollouts, evaluations, teacher data and validation dumps all save episodes as JSON Lines, one
`Episode` per line (spec: metrics.md, "The episode record"). Every metric is computable from these
records alone, so any run can be re-scored later without re-running it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Termination = Literal[
    "solved", "turn_limit", "token_budget", "no_tool_call", "finish", "simulator_error"
]
Choice = Literal["action", "search", "answer"]


class Turn(BaseModel):
    """One assistant generation and the gym's reply to it."""

    model_config = ConfigDict(extra="allow")

    choice: Choice | None = Field(description="the tool call's choice; null when the generation had no valid tool call")
    content: str = Field(default="", description="the tool call's content as the gym received it")
    reward: float = Field(default=0.0, description="the gym's step reward for this turn (unshaped)")
    feedback: str = Field(default="", description="the observation text the gym returned")
    user_involved: bool = Field(default=False, description="whether this turn's choice needs the user (U(tau))")
    think: str = Field(default="", description="the text inside <think>...</think>, if any")
    prompt_tokens: int = Field(default=0, description="tokens in the context before this generation")
    completion_tokens: int = Field(default=0, description="tokens the policy generated in this turn")


class Episode(BaseModel):
    """A whole episode: one task, one policy, every turn.

    An episode that ended in ``simulator_error`` also carries ``simulator_error``: the simulator's
    last error (it is left out of the metrics, and a rerun of the same command plays it again).
    """

    model_config = ConfigDict(extra="allow")

    gym: str = Field(description="gym name, e.g. 'function'")
    task_id: str = Field(description="the task's stable id inside its data source")
    policy: str = Field(default="", description="agent spec string, e.g. 'hf:embedded' or 'scripted:random'")
    seed: int = Field(default=0, description="the seed the episode was played with")
    turns: list[Turn] = Field(default_factory=list)
    score: float = Field(default=0.0, description="sum of the gym's step rewards (unshaped)")
    success: bool = Field(default=False, description="whether the gym declared the task solved")
    user_actions: int = Field(default=0, description="number of user-involved turns, U(tau)")
    termination: Termination = Field(description="why the episode ended")
    simulator: str = Field(default="none", description="'none', 'offline' or the simulator model's name")

    @classmethod
    def from_turns(cls, *, turns: list[Turn], **fields: Any) -> Episode:
        """Build a record, deriving `score` and `user_actions` from the turns."""
        return cls(
            turns=turns,
            score=float(sum(t.reward for t in turns)),
            user_actions=sum(t.user_involved for t in turns),
            **fields,
        )


class RecordFileError(ValueError):
    """A records (JSON Lines) file that cannot be read; the message names the file and line."""


# ---- JSON Lines: the one reader and writer of every .jsonl file baorl keeps -----------------------
#
# A line ends at "\n" and nowhere else. `str.splitlines` also splits at U+2028, U+2029, U+0085 (and
# \v, \f, \x1c-\x1e), which a model may emit inside any string field, so it must never read JSONL.
# The writer escapes those three characters anyway (JSON allows them raw, other tools split there)
# and replaces lone surrogates (from "\ud800" escapes in an endpoint's JSON) by U+FFFD, since
# they cannot be encoded as UTF-8. Rewrites are atomic; appends never leave a torn line behind
# when the write fails (a full disk, a file-size limit).

#: a disk that is full or a file-size limit: a user's problem, reported in one line
_NO_ROOM = {errno.EFBIG, errno.ENOSPC, errno.EDQUOT}
_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}
_LINE_BREAK = re.compile("[\u2028\u2029\x85]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    r"""`text` with every lone surrogate replaced by U+FFFD, so it can be written as UTF-8.

    Model and simulator text enters baorl through JSON, where ``"\ud800"`` decodes to a lone
    surrogate; valid pairs decode to one character and are kept.

    >>> clean_text("ok \ud800 \U0001F600")
    'ok \ufffd \U0001f600'
    """
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def match_brace(text: str, start: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at `start` (braces inside quoted strings ignored), or None.

    >>> match_brace('{"a": "}"} tail', 0)
    9
    """
    depth, i, quote = 0, start, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def clean_json(value: Any) -> Any:
    """`clean_text` applied to every string (keys included) inside a JSON-like value."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_json(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def jsonl_line(obj: Any) -> str:
    r"""One JSON Lines line, ``"\n"`` included, for a pydantic model or a JSON-able value.

    Non-ASCII text stays readable; U+2028, U+2029 and U+0085 are escaped and lone surrogates
    become U+FFFD.

    >>> jsonl_line({"t": "a\u2028b\x85c é \udc00"})
    '{"t": "a\\u2028b\\u0085c é \ufffd"}\n'
    """
    if isinstance(obj, BaseModel):
        try:
            text = obj.model_dump_json()
        except ValueError:  # a lone surrogate somewhere: pydantic refuses to encode it
            text = json.dumps(clean_json(obj.model_dump(mode="json")), ensure_ascii=False)
    else:
        text = json.dumps(obj, ensure_ascii=False)
    if "\n" in text:  # json never emits a raw newline (only with indent): one value, one line
        raise ValueError("a JSON Lines value must fit on one line")
    text = _LINE_BREAK.sub(lambda m: _LINE_BREAKS[m.group()], text)
    return clean_text(text) + "\n"


@dataclass
class JsonlLines:
    """The lines of a JSON Lines file, split on ``"\\n"`` only.

    Attributes:
        path: the file.
        rows: ``(line number, text, value)`` of every non-blank line that parsed (`text` without its ``"\\n"``).
        torn: the text of a last line that did not parse (a write cut short), dropped; else None.
        unterminated: the file's last line lacks its ``"\\n"`` (cut short, or written by another tool).
    """

    path: Path
    rows: list[tuple[int, str, Any]] = field(default_factory=list)
    torn: str | None = None
    unterminated: bool = False


def read_jsonl(path: str | os.PathLike, *, torn_tail: bool = False, what: str = "JSON value",
               check: Any = None) -> JsonlLines:
    """Read a JSON Lines file: lines end at ``"\\n"`` only; blank lines are skipped.

    Args:
        torn_tail: drop a last line that does not parse (or that `check` rejects) instead of
            raising: a run killed mid-write leaves one. Damage anywhere else is still an error.
        what: what a line should hold, for the error message.
        check: optional ``value -> value``; raising `ValueError` (pydantic's `ValidationError`
            included) marks the line as bad. Its result is what `rows` holds.

    Raises:
        RecordFileError: naming ``path:line`` and the problem (the file is missing, not UTF-8, or a line is bad).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecordFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RecordFileError(f"{path}: is a directory, not a JSON Lines file") from None
    out = JsonlLines(path, unterminated=bool(data) and not data.endswith(b"\n"))
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    for i, line in enumerate(raw, 1):
        try:
            text = line.decode("utf-8")
            if not text.strip():
                continue
            value = json.loads(text)
            if check is not None:
                value = check(value)
        except (ValueError, RecursionError) as e:  # bad UTF-8, bad JSON, rejected by `check`
            if torn_tail and i == len(raw):
                out.torn = line.decode("utf-8", "replace")
                break
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise RecordFileError(f"{path}:{i}: not a valid {what}: {why}") from e
        out.rows.append((i, text, value))
    return out


def append_jsonl(path: str | os.PathLike, values: Iterable[Any]) -> int:
    """Append values (pydantic models or JSON-able values) as lines; returns how many.

    The lines go out in one write and are fsynced. A write that fails (a full disk, a file-size
    limit) is undone: the file is cut back to its old length, so no torn line stays behind. A
    last line without its ``"\\n"`` gets one first, so two values never share a line.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [jsonl_line(v) for v in values]
    if not lines:
        return 0
    payload = "".join(lines).encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        if start and os.pread(fd, 1, start - 1) != b"\n":
            payload = b"\n" + payload
        view = memoryview(payload)
        try:
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException as e:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            if isinstance(e, OSError) and e.errno in _NO_ROOM:
                raise RecordFileError(f"{path}: cannot append ({e.strerror}); the records already there are "
                                      "whole: make room and rerun the same command") from e
            raise
    finally:
        os.close(fd)
    return len(lines)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Replace `path` with `data` atomically: a temporary file in the same directory, fsynced,
    renamed over `path`, and the directory fsynced. A kill or a failed write leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in _NO_ROOM:
            raise RecordFileError(f"{path}: cannot rewrite ({e.strerror}); it is left as it was: make room and "
                                  "rerun the same command") from e
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def write_jsonl(path: str | os.PathLike, values: Iterable[Any]) -> int:
    """Write a whole JSON Lines file atomically (see `atomic_write`); returns how many lines."""
    lines = [v if isinstance(v, str) and v.endswith("\n") else jsonl_line(v) for v in values]
    atomic_write(path, "".join(lines))
    return len(lines)


# ---- episode records ------------------------------------------------------------------------------
def write_episodes(path: str | os.PathLike, episodes: Iterable[Episode], *, append: bool = False) -> int:
    """Write episodes as JSON Lines; returns how many were written.

    Appending adds whole lines (a failed write is undone); otherwise the file is replaced atomically.
    """
    return append_jsonl(path, episodes) if append else write_jsonl(path, list(episodes))


def _episode(value: Any) -> Episode:
    return Episode.model_validate(value)


def read_episode_lines(path: str | os.PathLike, *, skip_partial_tail: bool = False) -> JsonlLines:
    """`read_jsonl` of a records file: `rows` hold validated `Episode` objects."""
    path = Path(path)
    if not path.exists():
        raise RecordFileError(f"{path}: no such records file")
    return read_jsonl(path, torn_tail=skip_partial_tail, what="episode record", check=_episode)


def iter_episodes(path: str | os.PathLike, *, skip_partial_tail: bool = False) -> Iterator[Episode]:
    """Read and validate episode records.

    A bad line raises `RecordFileError` naming the file and line number. With
    `skip_partial_tail`, a truncated *last* line (a run killed mid-write) is dropped silently
    so that the episode is redone; damage anywhere else is still an error.
    """
    for _, _, ep in read_episode_lines(path, skip_partial_tail=skip_partial_tail).rows:
        yield ep


def read_episodes(path: str | os.PathLike, **kw: Any) -> list[Episode]:
    """`iter_episodes` as a list."""
    return list(iter_episodes(path, **kw))
