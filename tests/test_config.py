"""The shared YAML config loader (`baorl.config.load_config`): errors name the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from baorl.config import ConfigError, StrictModel, load_config


class Cfg(StrictModel):
    name: str = "run"
    lr: float = 1e-6


def test_loads_a_utf8_file(tmp_path: Path) -> None:
    p = tmp_path / "ok.yaml"
    p.write_text("name: caf\u00e9\nlr: 3.0e-6\n", encoding="utf-8")
    cfg = load_config(Cfg, p, ["lr=1e-5"])
    assert (cfg.name, cfg.lr) == ("caf\u00e9", 1e-5)


def test_a_non_utf8_file_is_named(tmp_path: Path) -> None:
    p = tmp_path / "latin1.yaml"
    p.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8 text \(byte 9"):
        load_config(Cfg, p)


def test_bad_yaml_and_missing_file_are_named(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(Cfg, p)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(Cfg, tmp_path / "missing.yaml")
