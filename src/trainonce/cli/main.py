"""``trainonce`` entry point: argparse subcommands, and one-line errors with non-zero exits.

Warnings are one line each and torch's trace logs are quiet (`console`); ``--debug`` shows the
full traceback instead of the one-line error, and torch's logs.
"""

from __future__ import annotations

import argparse
import sys

from . import analyze, export, run
from .console import cli_console


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trainonce",
        description="Train a network once and prune it in the same run (Only-Train-Once family).",
    )
    p.add_argument("--debug", action="store_true",
                   help="show tracebacks on errors, and torch's own logs while tracing")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run.add_parser(sub)
    analyze.add_parser(sub)
    export.add_parser(sub)
    return p


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, (ValueError, ImportError, OSError)):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 400 else text[:397] + "..."


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with cli_console(debug=args.debug):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("trainonce: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a CLI reports every failure as one line
        if args.debug:
            raise
        print(f"trainonce: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
