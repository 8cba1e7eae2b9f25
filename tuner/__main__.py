"""``python -m tuner`` and the ``tuner`` console script.

The command line's own module (:mod:`tuner.cli`) imports Typer, Optuna and torch; a Ctrl-C
during those imports would print a traceback, so they happen under the same rule as the
command itself: interrupted, exit status 130.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from tuner.cli import main as cli_main
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
