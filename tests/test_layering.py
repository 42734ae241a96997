"""The package layering of src/baorl: no import cycles, no arrow pointing up (bench/imports.py)."""

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "bench" / "imports.py"
_spec = importlib.util.spec_from_file_location("baorl_bench_imports", _PATH)
layering = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layering)


@pytest.fixture(scope="module")
def graph():
    return layering.analyse()


def test_no_package_cycles(graph):
    assert graph["cycles"] == [], f"package import cycles: {graph['cycles']}"


def test_no_module_cycles(graph):
    assert graph["module_cycles"] == [], f"module import cycles: {graph['module_cycles']}"


def test_no_upward_arrows(graph):
    bad = {f"{a} -> {b}": sorted(set(graph["edges"][(a, b)])) for a, b in graph["upward"]}
    assert not bad, f"imports pointing up the layer order {layering.LAYERS}: {bad}"


def test_every_package_has_a_layer(graph):
    base = layering.base_modules()
    assert {p for p in graph["packages"] if p not in base} <= set(layering.LAYERS)


def test_the_checker_sees_what_it_must(tmp_path):
    """A tree with a cycle, an upward arrow, a function-local import and a TYPE_CHECKING import."""
    src = tmp_path / "baorl"
    for pkg, text in {
        "gyms": "from baorl.agents.base import X\n",
        "agents": "def f():\n    from baorl.gyms import Y\n",
        "rollout": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from baorl.cli import Z\n",
        "cli": "",
    }.items():
        (src / pkg).mkdir(parents=True)
        (src / pkg / "__init__.py").write_text(text)
    (src / "__init__.py").write_text("")
    r = layering.analyse(src)
    assert r["cycles"] == [["agents", "gyms"]]
    assert r["upward"] == [("gyms", "agents")]
    assert r["local_imports"] == 1
    assert ("rollout", "cli") not in r["edges"]
