"""`make bench`: run every benchmark, each in a process of its own, and write `bench/RESULTS.md` with every
figure beside its target. Takes about fifteen minutes (`bench.waiting` waits for builds and rollouts at real
durations for about four, `bench.speculation` runs five trains of eight deploys for about four,
`bench.alarms` twelve deploys rolled back by an alarm for about three); each benchmark also
runs alone (`python -m bench.<name>`).
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

from bench import ack_latency, alarms, deploys, scale, speculation, trains, waiting

RESULTS = Path(__file__).with_name("RESULTS.md")
FIXES = Path(__file__).with_name("FIXES.md")  # what the numbers showed and what was changed, before/after
BENCHES = (("ack_latency", ack_latency.report), ("deploys", deploys.report), ("scale", scale.report),
           ("waiting", waiting.report), ("trains", trains.report), ("speculation", speculation.report),
           ("alarms", alarms.report))
TIMEOUT = 300  # seconds per benchmark; the first three take about two minutes together
# real-duration builds and rollouts: about four minutes (trains: about three); speculation: five runs of eight
# deploys, about four
TIMEOUTS = {"waiting": 540, "speculation": 420, "alarms": 420}


def run(name: str, workdir: Path) -> tuple[dict[str, Any], float]:
    """Run `bench.<name>` in a fresh interpreter; its figures and how long it took."""
    out, log = workdir / f"{name}.json", workdir / f"{name}.log"
    began = time.monotonic()
    print(f"bench.{name} ...", flush=True)
    with log.open("w") as errors:
        finished = subprocess.run([sys.executable, "-m", f"bench.{name}", "--json", str(out)],
                                  timeout=TIMEOUTS.get(name, TIMEOUT), stdout=subprocess.DEVNULL, stderr=errors,
                                  check=False)
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


def _maybe(figure: str, measured: str | None, target: str, met: bool | None) -> str:
    """A row whose figure may be missing (a knob the product lacks, a train that failed): n/a, never met;
    `met` None: a figure reported without a target."""
    if measured is None:
        return f"| {figure} | n/a | {target} | **no** |"
    return f"| {figure} | {measured} | {target} | {'-' if met is None else 'yes' if met else '**no**'} |"


def _missing(section: dict[str, Any], available: str | None = "available") -> str | None:
    """Why a section of bench.waiting has no figures, or None when it has them."""
    if "error" in section:
        return f"failed: {section['error'][:80]}"
    if available and section.get(available) is False:
        why = section.get("why") or f"POST /hooks/jenkins answered {section.get('hook_probe_status')}"
        return f"not available: {why}"
    return None


def waiting_rows(w: dict[str, Any]) -> list[str]:
    """Section 6 of the table: bench.waiting's figures, each with its target (issue 12, DESIGN §7)."""
    targets, rows = w["targets"], []
    cost, scaled = w["cost"], w["scaled"]
    why = _missing(cost, None)
    if why:
        rows.append(_maybe(f"6. Cost of waiting (60 s build, 60 s rollout): {why}", None, "", None))
    else:
        b, r = cost["build"], cost["rollout"]
        poll = f"poll {cost['poll']:g} s" + ("" if cost["poll_knob"] else ", built in: no `deploy.poll`")
        rows.append(_maybe(f"6. Jenkins calls per minute of build waiting (60 s build, no history, {poll})",
                           f"{b['per_minute']:.1f}/min ({b['jenkins_calls']} in {b['seconds']:.0f} s)", "(reported)",
                           None))
        rows.append(_maybe("6. Jenkins calls of a deploy with a 10-minute build, no history (the product's schedule "
                           "from it)",
                           f"{b['projection_10min']:.0f}", f"≤ {targets['jenkins_10min']}",
                           b["projection_10min"] <= targets["jenkins_10min"]))
        rows.append(_maybe(f"6. ECS calls per minute of rollout waiting ({r['seconds']:.0f} s rollout, {poll})",
                           f"{r['per_minute']:.1f}/min ({r['ecs_calls']}; CloudWatch {r['cloudwatch_calls']})",
                           "(reported)", None))
        rows.append(_maybe("6. ECS calls of a deploy with a 10-minute rollout, no history (the product's schedule "
                           "from it)",
                           f"{r['projection_10min']:.0f} (CloudWatch {r['deploy_cloudwatch_calls']})",
                           f"≤ {targets['ecs_10min']}", r["projection_10min"] <= targets["ecs_10min"]))
    why = _missing(scaled)
    scale = f"1:{w['scale']}, a train with a history"
    rows.append(_maybe(f"6. Jenkins calls of a deploy with a 10-minute build ({scale})" + (f": {why}" if why else ""),
                       None if why else f"{scaled['jenkins_10min']:.0f}", f"≤ {targets['jenkins_10min']}",
                       None if why else scaled["jenkins_10min"] <= targets["jenkins_10min"]))
    rows.append(_maybe(f"6. ECS calls of a deploy with a 10-minute rollout ({scale})" + (f": {why}" if why else ""),
                       None if why else f"{scaled['ecs_10min']:.0f} (CloudWatch {scaled['cloudwatch_calls']})",
                       f"≤ {targets['ecs_10min']}", None if why else scaled["ecs_10min"] <= targets["ecs_10min"]))
    for key, name, target in (("polling", "polling only", targets["notice_polling"]),
                              ("hook", "with the Jenkins hook", targets["notice_hook"])):
        section = w[key]
        why = _missing(section, "available" if key == "hook" else None)
        label = f"6. Build end in Jenkins → thread says passed, {name} (p50 / max)"
        if why or not section.get("passed"):
            rows.append(_maybe(f"{label}: {why or 'never said'}", None, f"p50 ≤ {target:g} s", None))
            continue
        passed, registered = section["passed"], section["task_definition"]
        usual = f"{passed['count']} builds ending around their usual {section['usual_build']:g} s"
        rows.append(_maybe(f"{label}, {usual}", f"{_s(passed['p50'])} / {_s(passed['max'])}", f"p50 ≤ {target:g} s",
                           passed["p50"] <= target))
        if registered:
            rows.append(_maybe(f"6. Build end → canary task definition registered, {name} (p50 / max)",
                               f"{_s(registered['p50'])} / {_s(registered['max'])}", "(reported)", None))
    rows += _comparison_rows(w)
    return rows


def _comparison_rows(w: dict[str, Any]) -> list[str]:
    """Fat Controller and fabfuel's ecs-deploy rolling the same service (app-web) at the same ECS speed."""
    rows = []
    cost = w["cost"]
    if "error" not in cost:
        fc = cost["fc_rollout"]
        rows.append(_maybe(f"7. Fat Controller rolling app-web (with app-worker, read in the same call; poll "
                           f"{cost['poll']:g} s): ECS calls, Proceed → Rolled out / per minute rolling / a 10-minute "
                           "rollout (the product's schedule)",
                           f"{fc['ecs_calls']} / {fc['per_minute']:.1f} / {fc['projection_10min']:.0f}", "(reported)",
                           None))
        if fc["completed_to_notice"] is not None:
            rows.append(_maybe("7. Fat Controller: ECS COMPLETED → thread says Rolled out",
                               _s(fc["completed_to_notice"]), "(reported)", None))
    for key, label in (("cost", "ecs_deploy"), ("hook", "ecs_deploy_sleep_5")):
        tool = w[key].get(label) if "error" not in w[key] else None
        if tool is None:
            continue
        if not tool.get("available") or "rollout_calls" not in tool:
            why = tool.get("why") or f"exit code {tool.get('exit_code')}"
            rows.append(_maybe(f"7. ecs-deploy ({label}): {why}", None, "(reported)", None))
            continue
        name = (f"ecs-deploy {tool['version']} rolling app-web alone, --sleep-time {tool['sleep_time_used']} "
                f"--timeout {tool['timeout']}" + (" (its defaults)" if tool["sleep_time_used"] == tool["sleep_time"]
                                                  else ""))
        rows.append(_maybe(f"7. {name}: ECS calls, in all / per minute rolling / a 10-minute rollout (linear; it "
                           f"needs --timeout ≥ 600 for that, it fails at {tool['timeout']} s)",
                           f"{tool['calls']['ecs']} / {tool['per_minute']:.1f} / {tool['projection_10min']:.0f}",
                           "(reported)", None))
        rows.append(_maybe(f"7. {name}: ECS COMPLETED → prints Deployment successful",
                           _s(tool["completed_to_success"]) if tool["completed_to_success"] is not None else "never",
                           "(reported)", None))
    return rows


def trains_rows(t: dict[str, Any]) -> list[str]:
    """Section 8: many trains in one process (issue 14, DESIGN §6)."""
    sc, iso = t["scale"], t["isolation"]
    load = (f"{sc['trains']} trains, {sc['queued'] // sc['trains']} queued each, {sc['peas']} peas, "
            f"{sc['finished']:,} finished")
    rows = [_row(f"8. One train's tick, nothing due ({load}) (p50 / max)",
                 f"{_ms(sc['tick (one train)']['p50'])} / {_ms(sc['tick (one train)']['max'])}", "< 50 ms",
                 sc["tick (one train)"]["p50"] < 50),
            _maybe(f"8. Every train's tick at once ({sc['trains']} lanes on one event loop) (p50 / max)",
                   f"{_ms(sc['tick']['p50'])} / {_ms(sc['tick']['max'])}", "(reported)", None)]
    for view in ("/deploy queue", "/deploy queue (all)", "/pea", "App Home"):
        rows.append(_row(f"8. {view} ({load}) (p50 / max)", f"{_ms(sc[view]['p50'])} / {_ms(sc[view]['max'])}",
                         "< 200 ms", sc[view]["p50"] < 200))
    rows.append(_maybe(f"8. Peak memory of the process ({sc['trains']} trains)", f"{sc['peak memory MB']:.0f} MB",
                       "(reported)", None))
    for reaction, name in (("build_to_canary", "build green → canary task definition registered"),
                           ("proceed_to_update", "Proceed → first UpdateService"),
                           ("rollout_to_state", "rollout complete in ECS → awaiting confirmation")):
        healthy, faulty, ratio = iso["healthy"][reaction]["p50"], iso["faulty"][reaction]["p50"], iso["ratio"][reaction]
        rows.append(_row(f"8. Isolation: billing's {name} while app's GitHub answers 500 for "
                         f"{iso['fault_seconds']:.0f} s (p50 with / without the fault)",
                         f"{_s(faulty)} / {_s(healthy)} (ratio {ratio:.2f})", "ratio ≤ 1.2", ratio <= 1.2))
    return rows


def speculation_rows(s: dict[str, Any]) -> list[str]:
    """Section 9: speculative builds and the ETA (DESIGN §8)."""
    targets, equal, long = s["targets"], s["workloads"]["equal"], s["workloads"]["long builds"]
    walls = " / ".join(_s(equal["walls"][k]) for k in ("0", "1", "2"))
    rows = [_row(f"9. Five deploys queued at once, build ≈ canary + gate + rollout ({equal['build_seconds']:g} s): "
                 "wall with speculate 0 / 1 / 2, wall(0)/wall(1)",
                 f"{walls} (ratio {s['ratio_0_1']:.2f})", f"ratio ≥ {targets['ratio']:g} (limit 1.67)",
                 s["ratio_0_1"] >= targets["ratio"]),
            _row(f"9. Five deploys queued at once, builds twice the rest ({long['build_seconds']:g} s): wall with "
                 "speculate 1 / 2", f"{_s(long['walls']['1'])} / {_s(long['walls']['2'])}", "speculate 2 beats 1",
                 s["long_2_beats_1"])]
    for name, workload in s["workloads"].items():
        for key, run in workload["runs"].items():
            if key != "0":
                rows.append(_maybe(f"9. {name}, speculate {key}: landed as fast-forwards to their candidates / GitHub "
                                   "merges (of 5)", f"{run['fast_forwards']} / {run['merges']}", "(reported)", None))
    limit = targets["eta_share"]
    for name, workload in s["workloads"].items():
        for key, run in workload["runs"].items():
            share = run["eta_share_p50"]
            rows.append(_maybe(f"9. ETA: predicted finish when queued, {name}, speculate {key}: median error, and as a "
                               "share of the wait",
                               None if share is None else f"{_s(run['eta_error_p50'])} ({share:.0%})",
                               f"≤ {limit:.0%}", None if share is None else share <= limit))
    return rows


def alarms_rows(a: dict[str, Any]) -> list[str]:
    """Section 10: canary analysis, an alarm in ALARM acted on within one poll (DESIGN §9)."""
    poll, rows = a["poll"], []
    for phase, name in (("gate", "at the canary gate"), ("rollout", "during the rolling update")):
        values = a["reaction"][phase]
        rows.append(_row(f"10. Alarm goes to ALARM {name} → the product's first move back in ECS, "
                         f"{values['count']} deploys, deploy.poll {poll:g} s (p50 / max)",
                         f"{_s(values['p50'])} / {_s(values['max'])}", f"p50 ≤ {poll:g} s (one poll)",
                         values["p50"] <= poll))
    rows.append(_row("10. Every deploy rolled back, its reason naming the alarm",
                     f"{', '.join(a['states'])}; {'yes' if a['reasons_name_the_alarm'] else 'no'}",
                     "rolled_back; yes", a["states"] == ["rolled_back"] and a["reasons_name_the_alarm"]))
    return rows


def table(ack: dict[str, Any], dep: dict[str, Any], sc: dict[str, Any]) -> list[str]:
    rows = ["| figure | measured | target | met |", "|---|---|---|---|"]
    acks = ack["all"]["all"]
    rows.append(_row(f"1. Ack latency, {acks['count']} acks (p50 / p99 / max)",
                     f"{_ms(acks['p50'])} / {_ms(acks['p99'])} / {_ms(acks['max'])}", "p99 < 100 ms",
                     acks["p99"] < 100))
    polled = ack["with_browsers"]
    with_browsers, served = polled["all"]["all"], polled["dashboard_requests"]
    rows.append(_row(f"1. Ack latency, the same run with {polled['browsers']} browsers polling the dashboard "
                     f"({served['count']} requests, p99 {_ms(served['p99'])}) (p50 / p99 / max)",
                     f"{_ms(with_browsers['p50'])} / {_ms(with_browsers['p99'])} / {_ms(with_browsers['max'])}",
                     "p99 < 100 ms, as without", with_browsers["p99"] < 100))
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
        limit = 50 if view == "/deploy stats" else 200  # stats: the production-time issue's target
        rows.append(_row(f"5. {view} (p50 / max)", f"{_ms(sc[view]['p50'])} / {_ms(sc[view]['max'])}",
                         f"< {limit} ms", sc[view]["p50"] < limit))
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
        *waiting_rows(figures["waiting"]),
        *trains_rows(figures["trains"]),
        *speculation_rows(figures["speculation"]),
        *alarms_rows(figures["alarms"]),
        "",
        "Views are timed as the functions their Slack handler calls (reading the database and rendering), "
        "without Slack's side; reaction and overhead figures come from the emulators' own timestamps "
        "(see `bench/deploys.py`); section 6 and 7 at production durations, counted from the emulators' records "
        "(see `bench/waiting.py`).",
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
