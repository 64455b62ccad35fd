"""Hearth's log lines on stderr, at the level `HEARTH_LOG_LEVEL` names (default info)."""

from __future__ import annotations

import logging
import os


def configure_logging(level: str | None = None) -> None:
    """Give the `hearth` loggers a handler once; entry points (app, CLIs) call this, imports never do."""
    logger = logging.getLogger("hearth")
    logger.setLevel((level or os.environ.get("HEARTH_LOG_LEVEL") or "info").upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(name)s - %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
