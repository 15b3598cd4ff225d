"""`python -m bridge.sandbox`: both simulators, seeded, in their own process until SIGTERM/SIGINT.

Benchmarks and subprocess tests start it, read the JSON written to `--info-file` (URLs and
credentials; the file appears only once both servers accept connections) and drive faults
and counters through `/_sandbox/...` on either server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from bridge.sandbox.outreach import OutreachSandbox
from bridge.sandbox.seed import people_of_their_own, seed_demo
from bridge.sandbox.server import Sandbox
from bridge.sandbox.zendesk import ZendeskSandbox


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bridge.sandbox", description=__doc__)
    parser.add_argument("--vehicles", type=int, default=200)
    parser.add_argument("--brands", type=int, default=12)
    parser.add_argument("--prospects", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request of both APIs")
    parser.add_argument("--info-file", type=Path, default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--outreach-port", type=int, default=0)
    parser.add_argument("--zendesk-port", type=int, default=0)
    parser.add_argument("--mint-interval", type=float, default=60.0, help="seconds between Outreach token mints")
    parser.add_argument("--access-ttl", type=float, default=7200.0, help="seconds an Outreach access token lives")
    parser.add_argument("--rng-seed", type=int, default=7)
    parser.add_argument("--zendesk-rate-limit", type=int, default=100_000,
                        help="Zendesk requests per minute before 429s (700: Enterprise, as benchmarks use)")
    parser.add_argument("--zendesk-export-rate-limit", type=int, default=10,
                        help="incremental export requests per minute before 429s (Zendesk: 10)")
    parser.add_argument("--zendesk-users", type=int, default=0,
                        help="Zendesk users of their own (no outreach: external id), one per prospect first")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    outreach = OutreachSandbox(mint_interval=args.mint_interval, access_ttl=args.access_ttl)
    zendesk = ZendeskSandbox(rate_limit=args.zendesk_rate_limit, export_rate_limit=args.zendesk_export_rate_limit)
    sandbox = Sandbox(outreach=outreach, zendesk=zendesk, host=args.host,
                      outreach_port=args.outreach_port, zendesk_port=args.zendesk_port)  # fmt: skip
    info = seed_demo(sandbox, vehicles=args.vehicles, brands=args.brands, prospects=args.prospects, rng_seed=args.rng_seed)
    if args.zendesk_users:
        people_of_their_own(sandbox, args.zendesk_users)
    for api in ("outreach", "zendesk"):
        sandbox.faults.set_latency(api, args.latency_ms / 1000)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with sandbox:
        text = json.dumps({"outreach_url": sandbox.outreach_url, "zendesk_url": sandbox.zendesk_url, "pid": os.getpid(), **info.as_dict()})
        if args.info_file is not None:
            tmp = args.info_file.with_suffix(args.info_file.suffix + ".tmp")
            tmp.write_text(text)
            tmp.replace(args.info_file)  # atomic: readers never see half a file
        print(text, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
