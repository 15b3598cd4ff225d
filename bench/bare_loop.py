"""The floor for extraction: a bare aiohttp loop that reads an Outreach listing and nothing else.

    .venv/bin/python bench/bare_loop.py URL TOKEN

GETs `URL` with the bearer `TOKEN`, decodes each body with the standard library's `json`,
counts `data`, follows `links.next` until there is none, and prints one JSON line:
`{"records": N, "pages": P, "seconds": S}` (the loop's own time, no process start-up). No
retries, no validation, no translation: what any client must at least spend to read the same
pages, run as its own process so that its CPU is measured alone (bench/extraction.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp

JSONAPI = "application/vnd.api+json"


async def read_all(url: str, token: str) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}", "Accept": JSONAPI, "Content-Type": JSONAPI}
    records = pages = 0
    started = time.monotonic()
    async with aiohttp.ClientSession(headers=headers) as session:
        next_url: str | None = url
        while next_url:
            async with session.get(next_url) as resp:
                resp.raise_for_status()
                body = json.loads(await resp.read())
            records += len(body["data"])
            pages += 1
            next_url = (body.get("links") or {}).get("next")
    return {"records": records, "pages": pages, "seconds": time.monotonic() - started}


def main() -> None:
    url, token = sys.argv[1], sys.argv[2]
    print(json.dumps(asyncio.run(read_all(url, token))), flush=True)


if __name__ == "__main__":
    main()
