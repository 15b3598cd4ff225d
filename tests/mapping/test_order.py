"""Dependency order of mappings: targets first, alphabetical ties, cycles broken deterministically."""

from __future__ import annotations

import pytest

from bridge.mapping.model import Mapping
from bridge.mapping.order import cycles, sync_order


def graph(edges: dict[str, list[str]]) -> dict[str, Mapping]:
    """name -> mapping whose relationships point at the listed mappings."""
    return {
        name: Mapping.model_validate({
            "name": name,
            "source": {"type": name},
            "target": {"object": name, "name": "{x}"},
            "fields": {"x": "x"},
            "relationships": {f"to_{d}": {"from": d, "target": f"mapping:{d}"} for d in deps},
        })
        for name, deps in edges.items()
    }


def assert_respects(order: list[str], edges: dict[str, list[str]]) -> None:
    for name, deps in edges.items():
        for dep in deps:
            assert order.index(dep) < order.index(name), (dep, name, order)


def test_independent_mappings_are_alphabetical() -> None:
    assert sync_order(graph({"c": [], "a": [], "b": []})) == ["a", "b", "c"]


def test_chain() -> None:
    edges = {"a": ["b"], "b": ["c"], "c": []}
    assert sync_order(graph(edges)) == ["c", "b", "a"]
    assert cycles(graph(edges)) == []


def test_diamond() -> None:
    edges = {"top": ["left", "right"], "left": ["base"], "right": ["base"], "base": []}
    order = sync_order(graph(edges))
    assert_respects(order, edges)
    assert order == ["base", "left", "right", "top"]


def test_ties_go_alphabetically_as_they_become_free() -> None:
    edges = {"z": [], "b": ["z"], "a": []}
    assert sync_order(graph(edges)) == ["a", "z", "b"]


def test_cycle_is_broken_and_everything_returned() -> None:
    edges = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"], "e": []}
    mappings = graph(edges)
    order = sync_order(mappings)
    assert sorted(order) == sorted(edges)
    assert order == sync_order(graph(dict(reversed(list(edges.items())))))
    assert order.index("a") < order.index("d")
    assert cycles(mappings) == [["a", "b", "c"]]


def test_cycle_break_prefers_fewest_unsynced_dependencies() -> None:
    edges = {"a": ["b", "c"], "b": ["a"], "c": ["a"]}
    assert sync_order(graph(edges)) == ["b", "a", "c"]
    assert cycles(graph(edges)) == [["a", "b", "c"]]


def test_self_reference_is_a_cycle_but_not_a_blocker() -> None:
    edges = {"tree": ["tree"], "leaf": ["tree"]}
    mappings = graph(edges)
    assert sync_order(mappings) == ["tree", "leaf"]
    assert cycles(mappings) == [["tree"]]


def test_unknown_targets_are_ignored() -> None:
    assert sync_order(graph({"a": ["missing"]})) == ["a"]


@pytest.mark.parametrize("size", [1, 5, 30])
def test_long_chain(size: int) -> None:
    names = [f"m{i:02d}" for i in range(size)]
    edges = {n: ([names[i + 1]] if i + 1 < size else []) for i, n in enumerate(names)}
    assert sync_order(graph(edges)) == list(reversed(names))
