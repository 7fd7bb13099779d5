"""The ``rsrouter`` command: thin argument parsing over the library.

Each command group adds its own subcommands and handlers (:mod:`.certify`: demo, certify,
summary; :mod:`.router`; :mod:`.dualrs`; :mod:`.bench`; :mod:`.leaderboard`; :mod:`.experts`).
Only argparse and rsrouter's light modules are imported here: torch, timm and pandas are imported
by the commands that use them, so ``--help``, ``--version``, ``experts list/show`` and argument
errors answer at once, and commands that run no model (summary, bench report, leaderboard) never
import torch. Every argument is checked by argparse before any file is created.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from .. import __version__
from ..errors import RsrouterError
from .bench import add_bench
from .certify import add_certify, add_demo, add_summary
from .common import warn
from .dualrs import add_dualrs
from .experts import add_experts
from .leaderboard import add_leaderboard
from .router import add_router


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, groups in the order ``--help`` lists them."""
    parser = argparse.ArgumentParser(
        prog="rsrouter",
        description="Certified robustness by randomized smoothing with routed noise levels.")
    parser.add_argument("--version", action="version", version=f"rsrouter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_demo, add_certify, add_summary, add_router, add_dualrs, add_bench,
                add_leaderboard, add_experts):
        add(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    warn(str(message))


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` (default: the process's); returns its exit status (0 done,
    2 an error printed as one line, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a bad argument (argparse printed why)
        return int(e.code or 0)
    from ..runtime import tune_allocator

    tune_allocator()
    shown, stdout = warnings.showwarning, sys.stdout
    warnings.showwarning = _one_line_warning
    try:
        args.func(args)
    except (RsrouterError, ValueError, FileNotFoundError) as e:
        if os.environ.get("RSROUTER_DEBUG"):
            raise
        print(f"rsrouter: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nrsrouter: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        warnings.showwarning = shown
        if sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout = stdout
        if "torch.distributed" in sys.modules:
            from ..distributed import teardown

            teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
