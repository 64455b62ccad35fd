"""`python -m llm.rest`: serve models over an OpenAI-compatible REST API.

    python -m llm.rest --model default [--model NAME=MODEL ...] [--lib-path DIR] [--device DEVICE]
                       [--backend llama.cpp|torch]
                       [--host HOST] [--port PORT] [--api-key KEY] [--parallel N] [--ctx-size N]
                       [--strict-model-names]

Every flag can also come from a `HEARTH_*` variable (HEARTH_MODEL, HEARTH_PORT, HEARTH_API_KEY, ...);
a flag wins over its variable.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from llm.logs import configure_logging
from llm.rest.app import create_app
from llm.rest.settings import ServerSettings
from llm.settings import problems
from native.errors import HearthError

log = logging.getLogger("hearth.rest")

LIB_ENV = "LLAMA_CPP_LIB_PATH"  # read by llama_cpp when it loads, at import


def parser() -> argparse.ArgumentParser:
    """One flag per ServerSettings field, its help text the field's description."""
    fields = ServerSettings.model_fields
    p = argparse.ArgumentParser(prog="python -m llm.rest", description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", metavar="[NAME=]MODEL", help=fields["model"].description)
    for name, metavar in [
        ("lib_path", "DIR"),
        ("device", "DEVICE"),
        ("backend", "NAME"),
        ("host", "HOST"),
        ("port", "PORT"),
        ("api_key", "KEY"),
        ("parallel", "N"),
        ("ctx_size", "TOKENS"),
        ("threads", "N"),
        ("stream_interval_ms", "MS"),
    ]:
        p.add_argument(
            "--" + name.replace("_", "-"), dest=name, metavar=metavar, help=fields[name].description
        )
    p.add_argument("--insecure", action="store_true", default=None, help=fields["insecure"].description)
    p.add_argument(
        "--strict-model-names",
        action="store_true",
        default=None,
        help=fields["strict_model_names"].description,
    )
    return p


def settings_from(argv: list[str] | None) -> ServerSettings:
    """Flags over HEARTH_* variables over defaults; exits with the reason on a bad value."""
    given = {k: v for k, v in vars(parser().parse_args(argv)).items() if v is not None}
    try:
        return ServerSettings(**given)
    except ValidationError as exc:
        sys.exit(f"python -m llm.rest: {problems(exc)}")


def use_library(lib_path: Path) -> None:
    """llama.cpp's library was loaded when `llm` was imported: to load another, start over with
    LLAMA_CPP_LIB_PATH set (once; the variable then matches and this returns)."""
    folder = (lib_path if lib_path.is_dir() else lib_path.parent).resolve()
    if not any(folder.glob("libllama.*")) and not any(folder.glob("llama.dll")):
        sys.exit(f"python -m llm.rest: no llama.cpp library (libllama.so, .dylib or llama.dll) in {folder}")
    if os.environ.get(LIB_ENV) != str(folder):
        os.environ[LIB_ENV] = str(folder)
        os.execv(sys.executable, [sys.executable, "-m", "llm.rest", *sys.argv[1:]])


def main(argv: list[str] | None = None) -> None:
    settings = settings_from(argv)
    if settings.lib_path:
        use_library(settings.lib_path)
    configure_logging()
    try:
        app = create_app(settings)
    except (HearthError, ValueError) as exc:
        sys.exit(f"python -m llm.rest: {exc}")
    log.info(
        "listening on http://%s:%d: the OpenAI API under /v1, docs at /docs%s",
        settings.host,
        settings.port,
        ", API key required" if settings.api_key else "",
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()
