"""Zendesk custom objects and fields from the mappings, and mappings from the Outreach schema.

One concept per module: `desired` (what the mappings need), `plan` (the difference with
Zendesk), `limits` (the plan limits, checked before any change), `apply` (create what is
missing, never delete or retype), `report` (plans as text), `remote` (`validate --remote`
against both APIs) and `scaffold` (a starter mapping from the Outreach schema).
`ensure_objects` is kept here for the demo, the benchmarks and the tests.
"""

from __future__ import annotations

from bridge.schema.apply import Change, apply_plan, ensure_objects

__all__ = ["Change", "apply_plan", "ensure_objects"]
