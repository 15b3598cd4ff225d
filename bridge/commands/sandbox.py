"""`bridge sandbox`: the fake APIs and a database, left running for a newcomer to use by hand.

After `bridge demo` has told the story, this lets a newcomer type each command themselves:
it starts the sandbox Outreach and Zendesk on loopback with the demo's sample data, gives
them a fresh database (`bridge_sandbox` in the embedded Postgres, or DATABASE_URL as given),
prints the environment that points bridge at all three, and keeps running until Ctrl-C or
SIGTERM. The printed lines are `export NAME=value` (shell-quoted), so they can be pasted; the
last line starts with `# ready` once everything accepts connections. Zendesk starts without
custom objects: `bridge schema apply` creates them, as on a real account.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import sys
from pathlib import Path

from bridge import wiring
from bridge.commands.common import EXIT_OK
from bridge.mapping.load import load_mappings
from bridge.pipeline.run import stop_signals
from bridge.settings import Settings
from bridge.store import scratch

SANDBOX_DATABASE = "bridge_sandbox"
NEXT_STEPS = (
    "bridge migrate",
    "bridge schema plan && bridge schema apply",
    "bridge backfill --dry-run && bridge backfill",
    "bridge status",
    "bridge worker",
)


async def cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from bridge.sandbox import Sandbox, seed_demo  # only this command needs the simulators

    load_mappings(settings.bridge_mappings)  # a missing folder is exit 2 before anything starts
    if settings.database_url is None:
        dsn = await scratch.fresh_database(wiring.database_dsn(settings), SANDBOX_DATABASE)
    else:
        dsn = settings.database_url.get_secret_value()
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        stop.set()

    with stop_signals(on_signal):
        async with Sandbox() as sandbox:
            seed = seed_demo(sandbox, vehicles=args.vehicles)
            urls = (sandbox.outreach_url, sandbox.zendesk_url)
            env = wiring.settings_env(wiring.sandbox_settings(settings, urls, seed, dsn))
            if args.env_file is not None:
                _write_env_file(args.env_file, env)
            _print_env(env, urls, args.env_file)
            await stop.wait()
    print("# sandbox stopped", flush=True)
    return EXIT_OK


def _print_env(env: dict[str, str], urls: tuple[str, str], env_file: Path | None) -> None:
    print("# bridge sandbox: export these in another shell (or run there with a .env file)", flush=True)
    print("unset OUTREACH_ACCESS_TOKEN  # the sandbox uses OAuth refresh; a fixed token would conflict")
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")
    print("# then, in that shell:")
    for step in NEXT_STEPS:
        print(f"#   {step}")
    if env_file is not None:
        print(f"# (also written to {env_file})")
    print(f"# ready: Outreach at {urls[0]}, Zendesk at {urls[1]}; Ctrl-C stops the sandbox", flush=True)
    sys.stdout.flush()


def _write_env_file(path: Path, env: dict[str, str]) -> None:
    """A dotenv file bridge reads from its working directory (values quoted as in a shell)."""
    text = "".join(f"{name}={shlex.quote(value)}\n" for name, value in env.items())
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
