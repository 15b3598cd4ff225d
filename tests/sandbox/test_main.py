"""`python -m bridge.sandbox` in its own process: starts, writes its info file, serves, stops."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp


async def test_process_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    info_file = tmp_path / "sandbox.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.sandbox", "--vehicles", "30", "--brands", "3", "--prospects", "5",
        "--info-file", str(info_file), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while not info_file.exists():
            assert proc.returncode is None and asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        info = json.loads(info_file.read_text())
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {info['outreach_token']}"}
            async with http.get(f"{info['outreach_url']}/api/v2/customObjects/vehicles?page[size]=100", headers=headers) as r:
                assert r.status == 200 and len((await r.json(content_type=None))["data"]) == 30
            async with http.get(f"{info['zendesk_url']}/_sandbox/counters") as r:
                assert (await r.json())["totals"]["outreach"] == 1
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
