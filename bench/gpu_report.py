"""The JSON bench/gpu_check.sh prints: its results folder read into one object, with the issue's
targets (decode >= 0.9x llama-bench tg128; 8 streams >= 4x one; greedy replies from the cache equal to
replies from scratch) each as value, target and met (null when it was not measured).

    python3 bench/gpu_report.py RESULTS_DIR [--seconds S] [--budget S]

Standard library only: it runs before anything is installed, and when nothing could be.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

DECODE_TARGET = 0.9
STREAMS_TARGET = 4.0
CACHE_TEST = "test_greedy_reply_from_the_cache_equals_the_one_from_scratch"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def phases(results: Path) -> dict[str, dict]:
    found = {}
    path = results / "phases.tsv"
    for line in path.read_text().splitlines() if path.exists() else []:
        name, status, seconds, note = (line.split("\t") + ["", "", ""])[:4]
        found[name] = {"status": status, "seconds": int(seconds or 0), "note": note}
    return found


def gpu(results: Path) -> list[dict]:
    path = results / "gpu.csv"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        name, memory, driver, cap = ([f.strip() for f in line.split(",")] + ["", "", "", ""])[:4]
        rows.append({"name": name, "memory_total": memory, "driver": driver, "compute_cap": cap})
    return rows


def tests(results: Path) -> dict | None:
    """pytest's junit XML: counts, and each test's outcome by name."""
    try:
        root = ET.parse(results / "pytest.xml").getroot()
    except (OSError, ET.ParseError):
        return None
    outcomes = {}
    for case in root.iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if (found := case.find(tag)) is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                outcome += f": {(found.get('message') or '')[:300]}"
        outcomes[case.get("name", "?")] = outcome
    counts = {
        kind: sum(o.startswith(kind) for o in outcomes.values())
        for kind in ("passed", "failed", "error", "skipped")
    }
    return {**counts, "outcomes": outcomes}


def llama_bench(results: Path) -> dict | None:
    rows = read_json(results / "llama-bench.json")
    if not isinstance(rows, list):
        return None
    pick = {
        "tg128_tok_s": next((r for r in rows if r.get("n_prompt") == 0 and r.get("n_gen") == 128), None),
        "pp512_tok_s": next((r for r in rows if r.get("n_prompt") == 512 and r.get("n_gen") == 0), None),
    }
    out: dict[str, Any] = {k: round(r["avg_ts"], 1) if r else None for k, r in pick.items()}
    first = rows[0] if rows else {}
    out.update(
        {k: first.get(k) for k in ("backends", "gpu_info", "n_gpu_layers", "flash_attn", "build_commit")}
    )
    return out


def target(value: float | None, wanted: float) -> dict:
    return {"value": value, "target": f">= {wanted}", "met": None if value is None else value >= wanted}


def met(outcomes: list[str]) -> bool | None:
    """Whether every test that ran passed; None when none ran (all skipped, or no tests)."""
    ran = [o for o in outcomes if not o.startswith("skipped")]
    return all(o == "passed" for o in ran) if ran else None


def native_lines(results: Path) -> dict:
    path = results / "native.log"
    lines = path.read_text().splitlines() if path.exists() else []
    keys = {
        "devices": "  devices ",
        "gpu_layers": "gpu layers ",
        "llama_cpp_cuda": "  llama.cpp cuda ",
        "torch": "  torch ",
    }
    return {k: next((ln.strip() for ln in lines if ln.startswith(p)), None) for k, p in keys.items()}


def report(results: Path, seconds: int | None, budget: int | None) -> dict:
    decode = read_json(results / "decode.json")
    concurrent = read_json(results / "concurrent.json")
    torch_decode = read_json(results / "torch_decode.json")
    bench = llama_bench(results)
    tested = tests(results)
    hearth_decode = decode.get("hearth_langchain_astream_tok_s") if decode else None
    tg128 = bench.get("tg128_tok_s") if bench else None
    by_streams = {str(r["streams"]): r["tok_s"] for r in concurrent["hearth"]} if concurrent else {}
    cache_tests = {k: v for k, v in (tested or {}).get("outcomes", {}).items() if k.startswith(CACHE_TEST)}
    problems = results / "problems.txt"
    return {
        "check": "bench/gpu_check.sh",
        "seconds": seconds,
        "budget_s": budget,
        "within_9_minutes": None if seconds is None else seconds <= 540,
        "problems": problems.read_text().splitlines() if problems.exists() else [],
        "gpu": gpu(results),
        "cmake_args": (results / "cmake-args.txt").read_text().strip()
        if (results / "cmake-args.txt").exists()
        else None,
        "phases": phases(results),
        "native": native_lines(results),
        "tests": tested,
        "llama_bench": bench,
        "decode": None
        if decode is None
        else {
            "hearth_tok_s": hearth_decode,
            "llama_cpp_python_tok_s": decode.get("llama_cpp_python_stream_tok_s"),
            "hearth_over_llama_cpp_python": decode.get("ratio"),
            "device": decode.get("device"),
        },
        "concurrent": None
        if concurrent is None
        else {
            "hearth_tok_s_by_streams": by_streams,
            "hearth_8_over_1": concurrent.get("hearth_8_over_1"),
            "raw_batch_loop_8_over_1": concurrent.get("raw_8_over_1"),
            "hearth_8_over_raw_8": concurrent.get("hearth_8_over_raw_8"),
            "complete": all(r.get("complete", False) for r in concurrent["hearth"]),
            "device": concurrent.get("device"),
        },
        "turns": read_json(results / "turns.json"),
        "torch": None
        if torch_decode is None
        else {
            "torch_tok_s": torch_decode.get("hearth_torch_langchain_astream_tok_s"),
            "llama_cpp_tok_s": torch_decode.get("hearth_langchain_astream_tok_s"),
            "torch_over_llama_cpp": torch_decode.get("torch_over_llama_cpp_ratio"),
            "device": torch_decode.get("torch_device"),
        },
        "targets": {
            "decode_over_llama_bench_tg128": target(
                round(hearth_decode / tg128, 3) if hearth_decode and tg128 else None, DECODE_TARGET
            ),
            "streams_8_over_1": target(
                concurrent.get("hearth_8_over_1") if concurrent else None, STREAMS_TARGET
            ),
            "cached_reply_equals_scratch": {"tests": cache_tests, "met": met(list(cache_tests.values()))},
            "gpu_tests_pass": {"met": met(list((tested or {}).get("outcomes", {}).values()))},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--seconds", type=int)
    parser.add_argument("--budget", type=int)
    args = parser.parse_args()
    json.dump(report(args.results, args.seconds, args.budget), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
