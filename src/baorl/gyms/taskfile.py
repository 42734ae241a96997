"""Reading task files: one loader for every gym's UserRL-format data, with errors that name the place.

>>> import json, tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "t.json"
>>> _ = p.write_text(json.dumps([{"id": "a"}, {"id": "a"}]))
>>> load_records(p, Task, list)
Traceback (most recent call last):
...
baorl.gyms.base.TaskDataError: .../t.json: record 1 (id 'a'): duplicate id 'a'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from baorl.gyms.base import Task, TaskDataError

T = TypeVar("T", bound=Task)

SPLITS = ("train", "test", "all")


def read_json(path: str | Path, container: type, what: str = "task records") -> Any:
    """Parse a JSON file whose top level must be `container` (list or dict)."""
    path = Path(path)
    if not path.is_file():
        raise TaskDataError(f"{path}: no such data file")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TaskDataError(f"{path}: cannot read the file ({e.__class__.__name__}: {e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TaskDataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, container):
        kind = "a JSON list" if container is list else "a JSON object"
        raise TaskDataError(f"{path}: expected {kind} of {what}, got a JSON {type(raw).__name__}")
    return raw


def load_records(
    path: str | Path,
    model: type[T],
    container: type = list,
    *,
    what: str = "task records",
    unique: Sequence[str] = ("id",),
    check: Callable[[T], None] | None = None,
) -> list[T]:
    """Load and validate every record of a UserRL task file.

    A list file's records are named ``record N (id X)``; a dict file (id -> record, as Turtle's)
    gives each record its key as ``id`` and names it ``story KEY``. Every field in `unique` must
    not repeat. `check` may raise `ValueError` for rules a model cannot express.
    """
    path = Path(path)
    raw = read_json(path, container, what)
    if container is dict:
        items = [(f"story {key!r}", {**rec, "id": str(key)} if isinstance(rec, dict) else rec)
                 for key, rec in raw.items()]
    else:
        items = [(f"record {i}" + (f" (id {rec['id']!r})" if isinstance(rec, dict) and "id" in rec else ""), rec)
                 for i, rec in enumerate(raw)]
    tasks: list[T] = []
    seen: dict[str, set[Any]] = {field: set() for field in unique}
    for where, rec in items:
        if not isinstance(rec, dict):
            raise TaskDataError(f"{path}: {where} is not a JSON object")
        if isinstance(rec.get("id"), int) and not isinstance(rec.get("id"), bool):
            rec = {**rec, "id": str(rec["id"])}
        try:
            task = model.model_validate(rec)
            if check is not None:
                check(task)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'record'}: {err['msg']}" for err in e.errors())
            raise TaskDataError(f"{path}: {where}: {problems}") from None
        except ValueError as e:
            raise TaskDataError(f"{path}: {where}: {e}") from None
        for field in unique:
            value = getattr(task, field)
            if value in seen[field]:
                raise TaskDataError(f"{path}: {where}: duplicate {field} {value!r}")
            seen[field].add(value)
        tasks.append(task)
    return tasks


def select_split(tasks: Sequence[T], split: str, gym: str) -> list[T]:
    """The tasks of an embedded split, by each task's ``split`` field (``all``: every task)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for the embedded {gym} tasks; use one of {', '.join(SPLITS)}")
    return list(tasks) if split == "all" else [t for t in tasks if getattr(t, "split", None) == split]
