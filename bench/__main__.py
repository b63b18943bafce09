"""`make bench`: run every benchmark, each in a process of its own, and write `bench/RESULTS.md` with every
figure beside its target. Takes about two minutes; each benchmark also runs alone (`python -m bench.<name>`).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import ack_latency, deploys, scale

RESULTS = Path(__file__).with_name("RESULTS.md")
FIXES = Path(__file__).with_name("FIXES.md")  # what the numbers showed and what was changed, before/after
BENCHES = (("ack_latency", ack_latency.report), ("deploys", deploys.report), ("scale", scale.report))
TIMEOUT = 300  # seconds per benchmark; the three take about two minutes together


def run(name: str, workdir: Path) -> tuple[dict[str, Any], float]:
    """Run `bench.<name>` in a fresh interpreter; its figures and how long it took."""
    out, log = workdir / f"{name}.json", workdir / f"{name}.log"
    began = time.monotonic()
    print(f"bench.{name} ...", flush=True)
    with log.open("w") as errors:
        finished = subprocess.run([sys.executable, "-m", f"bench.{name}", "--json", str(out)], timeout=TIMEOUT,
                                  stdout=subprocess.DEVNULL, stderr=errors, check=False)
    if finished.returncode != 0:
        sys.exit(f"bench.{name} failed (exit code {finished.returncode}):\n{log.read_text()}")
    if log.stat().st_size:
        print(f"  (it logged errors, e.g. a step cancelled as the bot stopped: see {log})")
    return json.loads(out.read_text()), time.monotonic() - began


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _s(value: float) -> str:
    return f"{value:.2f} s"


def _row(figure: str, measured: str, target: str, met: bool) -> str:
    return f"| {figure} | {measured} | {target} | {'yes' if met else '**no**'} |"


def table(ack: dict[str, Any], dep: dict[str, Any], sc: dict[str, Any]) -> list[str]:
    rows = ["| figure | measured | target | met |", "|---|---|---|---|"]
    acks = ack["all"]["all"]
    rows.append(_row(f"1. Ack latency, {acks['count']} acks (p50 / p99 / max)",
                     f"{_ms(acks['p50'])} / {_ms(acks['p99'])} / {_ms(acks['max'])}", "p99 < 100 ms",
                     acks["p99"] < 100))
    names = {"build_to_canary": "build green → canary task definition registered",
             "proceed_to_update": "Proceed click → first UpdateService",
             "rollout_to_card": "rollout complete in ECS → card says so"}
    for key, name in names.items():
        values = dep["reaction"][key]
        rows.append(_row(f"2. Reaction: {name} (p50 / p99)", f"{_s(values['p50'])} / {_s(values['p99'])}",
                         "p50 < 1 s", values["p50"] < 1))
    over = dep["overhead"]
    rows.append(_row("3. Overhead per deploy (p50 / max)", f"{_s(over['p50'])} / {_s(over['max'])}",
                     "< 2 s", over["max"] < 2))
    for system, values in dep["calls"].items():
        target, met = ("< 50 (100 deploys/h in 5,000 requests/h)", values["max"] < 50) if system == "GitHub" \
            else ("(reported)", True)
        rows.append(_row(f"4. {system} calls per deploy (p50 / max)", f"{values['p50']:.0f} / {values['max']:.0f}",
                         target, met))
    rows.append(_row("5. Engine tick, nothing due (p50 / max)", f"{_ms(sc['tick']['p50'])} / {_ms(sc['tick']['max'])}",
                     "< 50 ms", sc["tick"]["p50"] < 50))
    for view in ("/deploy queue", "/deploy history", "/deploy stats", "/pea", "App Home"):
        rows.append(_row(f"5. {view} (p50 / max)", f"{_ms(sc[view]['p50'])} / {_ms(sc[view]['max'])}",
                         "< 200 ms", sc[view]["p50"] < 200))
    rows.append(_row("5. Peak memory of the process", f"{sc['peak memory MB']:.0f} MB", "< 200 MB",
                     sc["peak memory MB"] < 200))
    return rows


def main() -> None:
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="fc-bench-"))
    figures, took = {}, {}
    for name, _ in BENCHES:
        figures[name], took[name] = run(name, workdir)
    total = time.monotonic() - began
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, on {os.cpu_count()} cores "
        f"({platform.machine()}, Python {platform.python_version()}); the run took {total:.0f} s "
        f"({', '.join(f'{n} {t:.0f} s' for n, t in took.items())}).",
        "",
        *table(figures["ack_latency"], figures["deploys"], figures["scale"]),
        "",
        "Views are timed as the functions their Slack handler calls (reading the database and rendering), "
        "without Slack's side; reaction and overhead figures come from the emulators' own timestamps "
        "(see `bench/deploys.py`).",
        "",
    ]
    for name, report in BENCHES:
        lines += [f"## bench.{name}", "", (sys.modules[f"bench.{name}"].__doc__ or "").split("\n")[0], "",
                  "```", report(figures[name]), "```", ""]
    if FIXES.exists():
        lines += [FIXES.read_text().rstrip(), ""]
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS} in {total:.0f} s")


if __name__ == "__main__":
    main()
