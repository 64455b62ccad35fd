"""What a settings change costs: Hearth rebuilds the session's chain around the same engine, where the
seed tutorial builds a new model (a full load) on every slider move.

Prints JSON: the mean cost of one settings change as the app performs it (validate the panel's values,
rebuild the chain), the number of model loads it caused, and a model load measured in the same run for
scale. Targets: < 1 ms and 0 loads.

    .venv/bin/python bench/settings.py [--model default] [--changes 1000]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from anywhere; and the bench folder must not shadow the standard library (`concurrent`).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import time

from llm.web.chat_session import ChatSession
from llm.web.ui import settings_from_panel
from native import load_engine, model_loads
from native.engine import Engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--changes", type=int, default=1000)
    args = parser.parse_args()

    engine = load_engine(args.model)
    conversation = ChatSession(engine, session_id="bench")
    panels = [
        {
            "temperature": (i % 20) / 10,
            "repetition_penalty": 1.1,
            "top_p": 0.9,
            "top_k": i % 100,
            "max_new_tokens": 1 + i % 1024,
            "streaming": bool(i % 2),
            "system_prompt": "",
        }
        for i in range(args.changes)
    ]
    loads_before = model_loads()
    started = time.perf_counter()
    for values in panels:
        conversation.apply(settings_from_panel(values))
    per_change = (time.perf_counter() - started) / args.changes
    loads = model_loads() - loads_before

    started = time.perf_counter()
    fresh = Engine(engine.info, engine.device, n_ctx=engine.n_ctx)  # what reloading the model costs
    reload_s = time.perf_counter() - started
    fresh.close()

    print(
        json.dumps(
            {
                "bench": "settings",
                "model": engine.info.path.name,
                "changes": args.changes,
                "settings_change_ms": round(per_change * 1000, 4),
                "model_loads_caused": loads,
                "model_reload_ms": round(reload_s * 1000, 1),
                "reload_over_change_ratio": round(reload_s / per_change, 1),
                "targets": {"settings_change_ms": "< 1", "model_loads_caused": 0},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
