"""The ``clbproxy`` console script: tools around the proxy that need no reactor.

``clbproxy check`` validates a tap.conf and lists every problem, so a config can
be fixed (or gated in CI) before ``twistd clbproxy`` is asked to run it.
``clbproxy fleet push`` and ``clbproxy fleet status`` write a fleet's document
to etcd and show its instances (:mod:`clbproxy.ops.fleet_tools`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from clbproxy import __version__
from clbproxy.config import ConfigError, default_config_path
from clbproxy.config.fleet import has_fleet, read_local
from clbproxy.ops.fleet_tools import fleet_commands
from clbproxy.ops.preflight import load_checked


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    try:
        options = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    if options.command is None:
        parser.print_help(sys.stderr)
        return 2
    return options.run(options)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clbproxy",
        description="A layer-7 HTTP and WebSocket load balancer; run it with 'twistd clbproxy'.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="validate a configuration file",
        description="Validate a configuration file and list every problem in it.",
    )
    check.add_argument(
        "--config",
        metavar="PATH",
        help="the file to check (default: ./tap.conf if it exists, else the shipped demo)",
    )
    check.set_defaults(run=_check)
    fleet_commands(commands)
    return parser


def _check(options: argparse.Namespace) -> int:
    path = options.config if options.config is not None else default_config_path()
    if has_fleet(path):
        try:
            read_local(path)
        except ConfigError as e:
            for problem in e.problems:
                print(problem, file=sys.stderr)
            return 1
        print(f"{path}: ok (a fleet instance: 'clbproxy fleet push' checks its document)")
        return 0
    try:
        config = load_checked(path)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{path}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
