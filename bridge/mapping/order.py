"""The order mappings sync in: targets of `mapping:` relationships before the mappings using them.

Syncing `vehicle_brands` before `vehicles` lets most brand links resolve at once instead of
being parked. The order is deterministic (alphabetical among mappings that are free to go),
so two runs over the same files do the same thing. Cycles are legal (links are parked and
filled in later), so they never fail the order: the cycle is broken at the mapping with the
fewest unsynced dependencies, alphabetically first among equals, and every name is returned.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping as AbcMapping

from bridge.mapping.model import Mapping


def _graph(mappings: AbcMapping[str, Mapping]) -> dict[str, set[str]]:
    """name -> the other known mappings it depends on (self-references dropped)."""
    return {name: {d for d in m.depends_on() if d in mappings and d != name} for name, m in mappings.items()}


def sync_order(mappings: AbcMapping[str, Mapping]) -> list[str]:
    """Every mapping name, dependencies first, ties and cycle breaks decided alphabetically."""
    waiting = _graph(mappings)
    users: dict[str, set[str]] = {name: set() for name in waiting}
    for name, deps in waiting.items():
        for dep in deps:
            users[dep].add(name)
    ready = [name for name, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[str] = []
    while len(order) < len(waiting):
        if not ready:
            pending = (n for n in waiting if n not in order)
            heapq.heappush(ready, min(pending, key=lambda n: (len(waiting[n]), n)))
        name = heapq.heappop(ready)
        if name in order:
            continue
        order.append(name)
        for user in sorted(users[name]):
            waiting[user].discard(name)
            if not waiting[user] and user not in order:
                heapq.heappush(ready, user)
    return order


def cycles(mappings: AbcMapping[str, Mapping]) -> list[list[str]]:
    """Each group of mappings that depend on each other in a circle (self-references too).

    Groups are strongly connected components, each sorted, the list sorted; informational
    (for `bridge validate` and logs), since cycles are allowed.
    """
    graph = _graph(mappings)
    found = [sorted(c) for c in _components(graph) if len(c) > 1]
    found += [[name] for name, m in mappings.items() if name in m.depends_on()]
    return sorted(found)


def _components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (graphs are a handful of mappings)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            result.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result
