"""Parked links: relationships whose target record did not exist yet (placeholder).

The `parked_links` table is created by migration 0001; the functions that park a link and
fill it in when its target appears belong to a later issue and will live here.
"""

from __future__ import annotations

COUNT_SQL = "SELECT count(*) FROM parked_links WHERE mapping = $1"
