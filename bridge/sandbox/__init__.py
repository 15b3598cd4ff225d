"""Faithful Outreach and Zendesk API simulators on loopback (see DESIGN.md, "The sandbox").

`Sandbox` (server.py) runs both; `seed_demo` (seed.py) fills them with sample data;
`python -m bridge.sandbox` runs them in their own process. This package never imports
bridge's Outreach or Zendesk clients: it is an independent reading of `api/*.md`.
"""

from __future__ import annotations

from bridge.sandbox.counters import Counters
from bridge.sandbox.faults import Faults
from bridge.sandbox.outreach import OutreachSandbox
from bridge.sandbox.seed import SeedInfo, seed_demo
from bridge.sandbox.server import Sandbox
from bridge.sandbox.zendesk import ZendeskSandbox

__all__ = ["Counters", "Faults", "OutreachSandbox", "Sandbox", "SeedInfo", "ZendeskSandbox", "seed_demo"]
