"""`python -m native.fetch NAME [NAME...]`: make catalog models available and print their paths.

`make install` runs `python -m native.fetch default`. Errors print one line on stderr, exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from native.catalog import CATALOG, format_size, materialize
from native.errors import HearthError


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the fetch CLI; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m native.fetch", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", metavar="NAME", help=f"catalog model: {', '.join(CATALOG)}")
    parser.add_argument("--models-dir", help="where to assemble (default: $HEARTH_MODELS_DIR or models/)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        for name in args.names:
            path = materialize(name, args.models_dir, progress=not args.quiet)
            print(f"{name}: {path} ({format_size(path.stat().st_size)})")
    except (HearthError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
