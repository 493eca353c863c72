"""Run every benchmark and write one table: results.json and results.md.

Each script runs in its own subprocess with ``--json PATH``; a script that
fails (or is missing) becomes a row saying so, and the others still run::

    python benchmarks/run_all.py             # full sizes
    python benchmarks/run_all.py --quick     # a smoke run
    python benchmarks/run_all.py --only capture peers --framework torch

Writes ``benchmarks/results.json`` (every row, the environments, each
script's status) and ``benchmarks/results.md`` (the same rows as one Markdown
table), which the documentation includes on its Benchmarks page. They are
rewritten after every script, so an interrupted run keeps what finished.
Per-script JSON files go to ``benchmarks/out/`` (not committed).

``--keep`` merges with the previous results.json: a rerun of, say,
``--framework torch --label "16-core x86-64"`` on a quiet machine replaces
only the rows it measures again (same benchmark, framework and device), and
each row says which environment measured it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from capture import fmt  # table cells as every benchmark writes them

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "capture", "render", "attribution", "peers", "evaluate", "pressure",
    "keras_backends", "transformers", "scan",
]  # fmt: skip
TAKES_FRAMEWORK = {"capture", "attribution", "peers", "pressure"}
TAKES_DEVICE = {"capture", "attribution"}
TAKES_THREADS = {"capture", "attribution", "peers", "evaluate", "pressure"}

ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow", "MPLBACKEND": "Agg"}


def command(name: str, args: argparse.Namespace, out: Path) -> list[str]:
    """The command line that runs ``benchmarks/<name>.py`` for this run."""
    cmd = [sys.executable, str(HERE / f"{name}.py"), "--json", str(out)]
    cmd += ["--quick"] if args.quick else []
    if name in TAKES_FRAMEWORK and args.framework != "both":
        cmd += ["--framework", args.framework]
    if name in TAKES_DEVICE and args.device != "cpu":
        cmd += ["--device", args.device]
    if name in TAKES_THREADS and args.threads:
        cmd += ["--threads", str(args.threads)]
    return cmd


def _relative(arg: str) -> str:
    """A path inside the repository as the repository-relative path, for the record."""
    root = HERE.parent
    return str(Path(arg).relative_to(root)) if arg.startswith(str(root)) else arg


def run_script(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one benchmark script; return its status, rows, checks and environment."""
    out = HERE / "out" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    cmd = command(name, args, out)
    status: dict[str, Any] = {
        "benchmark": name,
        "framework": args.framework if name in TAKES_FRAMEWORK else "both",
        "device": args.device if name in TAKES_DEVICE else "cpu",
        "command": " ".join(["python", *(_relative(c) for c in cmd[1:])]),
        "rows": [],
        "checks": [],
        "environment": {},
    }
    if not (HERE / f"{name}.py").exists():
        return status | {"ok": False, "error": "script not found"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=args.timeout,
            env={**os.environ, **ENV},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return status | {"ok": False, "error": f"timed out after {args.timeout:.0f} s"}
    status["seconds"] = round(time.perf_counter() - t0, 1)
    data = json.loads(out.read_text()) if out.exists() else {}
    status["rows"] = [
        {"device": status["device"], "benchmark": name, **r, "script": name}
        for r in data.get("rows", [])
    ]
    status["checks"] = data.get("checks", [])
    status["environment"] = data.get("environment") or {}
    if proc.returncode != 0 or not out.exists():
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        status["error"] = lines[-1][:300] if lines else f"exit code {proc.returncode}"
    status["ok"] = "error" not in status
    return status


# --------------------------------------------------------------------------- merging


def _family(framework: str) -> str:
    """``"torch"``, ``"keras"`` or ``"any"`` (a framework-free row, e.g. render's)."""
    return next((f for f in ("torch", "keras") if str(framework).startswith(f)), "any")


def _redone(item: dict[str, Any], runs: list[dict[str, Any]]) -> bool:
    """Whether this run measured ``item`` (an old row or script status) again."""
    family = _family(item.get("framework", "both"))
    for run in runs:
        if run["benchmark"] != item.get("benchmark") or run["device"] != item.get("device", "cpu"):
            continue
        if run["framework"] == "both" or family in ("any", run["framework"]):
            return True
        if item.get("framework") == "both":  # an old all-framework status, partly redone
            return True
    return False


def merge(
    old: dict[str, Any], runs: list[dict[str, Any]]
) -> tuple[list[dict], list[dict], list[dict]]:
    """Environments, script statuses and rows: the old ones not redone, then this run's."""
    envs: list[dict[str, Any]] = list(old.get("environments", []))
    scripts = [s for s in old.get("scripts", []) if not _redone(s, runs)]
    rows = [r for r in old.get("rows", []) if not _redone(r, runs)]
    for run in runs:
        env = run.pop("environment")
        same = [
            k for k, e in enumerate(envs) if env.get("label") and e.get("label") == env["label"]
        ]
        if same:  # one label, one machine: several runs of it share one environment
            envs[same[0]] = envs[same[0]] | env
            env = envs[same[0]]
        elif env not in envs:
            envs.append(env)
        run["env"] = envs.index(env) + 1
        rows += [r | {"env": run["env"]} for r in run.pop("rows")]
        scripts.append(run)
    # renumber the environments still in use, in order of first use
    used = sorted({s["env"] for s in scripts} | {r["env"] for r in rows})
    number = {old_id: k for k, old_id in enumerate(used, 1)}
    for item in scripts + rows:
        item["env"] = number[item["env"]]
    envs = [envs[k - 1] for k in used]
    order = {name: k for k, name in enumerate(SCRIPTS)}
    fw_order = {"torch": 0, "keras": 1, "any": 2}

    def key(item: dict[str, Any]) -> tuple[int, str, int]:
        return (
            order.get(item["benchmark"], 99),
            item.get("device", "cpu"),
            fw_order[_family(item.get("framework", "both"))],
        )

    return envs, sorted(scripts, key=key), sorted(rows, key=key)


# --------------------------------------------------------------------------- output


def _escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(r: dict[str, Any]) -> str:
    for key, unit in (("median_ms", "ms"), ("peak_mb", "MB")):
        if r.get(key) is not None:
            return f"{float(r[key]):.1f} {unit}"
    return "–"


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool)) or v is None


_ENV_SKIP = {"machine", "cpus", "label", "quick", "torch_threads", "python"}


def markdown(envs: list[dict], scripts: list[dict], rows: list[dict]) -> str:
    """results.md: which machines, then one table of every row, then the checks."""
    head = ["<!-- written by benchmarks/run_all.py; do not edit by hand -->", ""]
    for k, env in enumerate(envs, 1):
        where = env.get("label") or f"{env.get('machine', '?')}, {env.get('cpus', '?')} CPUs"
        size = "quick run, small sizes" if env.get("quick") else "full sizes"
        versions = [f"Python {env.get('python', '?')}"] + [
            f"{n} {v}" for n, v in env.items() if v and n not in _ENV_SKIP
        ]
        head.append(f"- **env {k}**: {where} ({size}); {', '.join(versions)}.")
    head += [
        "",
        "Ratios (× baseline) are to the baseline named in the same benchmark and",
        "process: the plain forward pass for capture, attribution and peers (for",
        "memory, the forward pass's peak), the naive one-axes-per-map figure for render,",
        "Quantus's time for the same metric for evaluate (below 1: faster than Quantus).",
        "",
        "| benchmark | env | framework | case | median | × baseline | note |",
        "|---|---|---|---|---:|---:|---|",
    ]
    failed = [
        s | {"case": "(script failed)", "note": s.get("error", ""), "failed": True}
        for s in scripts
        if not s.get("ok")
    ]
    order = {name: k for k, name in enumerate(SCRIPTS)}
    body = []
    for r in sorted(failed, key=lambda s: order.get(s["benchmark"], 99)) + rows:
        fw = r.get("framework", "–")
        fw += f" ({r['device']})" if r.get("device", "cpu") != "cpu" else ""
        body.append(
            f"| {r['benchmark']} | {r['env']} | {fw} | {_escape(r.get('case', '?'))} | "
            f"{'–' if r.get('failed') else _value(r)} | {fmt(r.get('ratio'))} | "
            f"{_escape(r.get('note', ''))} |"
        )
    checks = [
        f"- {s['benchmark']} (env {s['env']}), {c.get('case', '')}: "
        + ", ".join(f"{k} {v}" for k, v in c.items() if k != "case" and _scalar(v))
        for s in scripts
        for c in s.get("checks", [])
        if isinstance(c, dict)
    ]
    return "\n".join(head + body + (["", *checks] if checks else [])) + "\n"


def write(out_dir: Path, old: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    """Merge and write results.json and results.md; return the table."""
    envs, scripts, rows = merge(old, json.loads(json.dumps(runs, default=str)))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(
        json.dumps({"environments": envs, "scripts": scripts, "rows": rows}, indent=2) + "\n"
    )
    table = markdown(envs, scripts, rows)
    (out_dir / "results.md").write_text(table)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--framework", choices=["torch", "keras", "both"], default="both")
    parser.add_argument("--device", default="cpu", help="PyTorch device for capture/attribution")
    parser.add_argument(
        "--threads", type=int, help="intra-op threads (capture, attribution, peers)"
    )
    parser.add_argument("--only", nargs="+", choices=SCRIPTS, help="run only these scripts")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per script")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.* go")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the rows of an earlier results.json that this run does not redo",
    )
    parser.add_argument("--label", help="how the table names this machine")
    args = parser.parse_args(argv)

    results_json = args.out / "results.json"
    old = json.loads(results_json.read_text()) if args.keep and results_json.exists() else {}
    runs: list[dict[str, Any]] = []
    table = ""
    for name in args.only or SCRIPTS:
        print(f"running benchmarks/{name}.py ...", flush=True)
        run = run_script(name, args)
        state = "ok" if run["ok"] else f"FAILED: {run.get('error')}"
        print(f"  {len(run['rows'])} rows in {run.get('seconds', '?')} s, {state}", flush=True)
        runs.append(run)
        # one environment per invocation: what every script reported, merged
        env = _fallback_environment()
        for r in runs:
            env |= {k: v for k, v in r["environment"].items() if v is not None}
        env |= {"quick": args.quick} | ({"label": args.label} if args.label else {})
        for r in runs:
            r["environment"] = env
        table = write(args.out, old, runs)
    print(table)
    return 0 if all(r["ok"] for r in runs) else 1


def _fallback_environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    sys.exit(main())
