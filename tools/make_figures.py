"""Regenerate each experiment's README figures from a fresh run, with their provenance.

Usage: python tools/make_figures.py [NAME ...]   (default: every conf/exp/*.yaml except smoke), or
``make figures``. For each experiment it runs ``python -m dynamics.run +exp=NAME`` (the README's command,
default seeds) into a scratch directory, copies the run's figures (and those of its first seed or point)
into ``experiments/NAME/figures/`` and writes ``experiments/NAME/figures/provenance.json``: the command,
the git commit (and whether the tree had uncommitted changes), the seeds, the status and verdict, and the
run's full config.
"""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"smoke"}


def git(*args) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def first_child(run: Path) -> Path | None:
    """The first seed's or point's run directory, if the run has several."""
    for sub in ("seeds", "points"):
        children = sorted((run / sub).glob("*"), key=lambda p: int(p.name) if p.name.isdigit() else 0)
        if children:
            return children[0]
    return None


def make(name: str) -> dict:
    command = [sys.executable, "-m", "dynamics.run", f"+exp={name}"]
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / name
        done = subprocess.run([*command, f"hydra.run.dir={run}"], cwd=ROOT)
        summary = json.loads((run / "summary.json").read_text())
        out = ROOT / "experiments" / name / "figures"
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        sources = [run] + ([child] if (child := first_child(run)) else [])
        copied = []
        for source in sources:
            prefix = "" if source == run else f"{source.parent.name[:-1]}_{source.name}_"
            for png in sorted((source / "figures").glob("*.png")):
                shutil.copy(png, out / f"{prefix}{png.name}")
                copied.append(f"{prefix}{png.name}")
        config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        verdict = summary.get("verdict") or {}
        record = {
            "command": f"python -m dynamics.run +exp={name}",
            "exit_code": done.returncode,
            "commit": git("rev-parse", "HEAD"),
            "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                             ":(exclude,glob)experiments/*/figures/**")),  # not our output
            "seeds": verdict.get("seeds") or [config.get("seed")],
            "status": summary.get("status"),
            "passed": verdict.get("passed"),
            "failed": verdict.get("failed"),
            "wall_time_s": summary.get("wall_time_s"),
            "figures": copied,
            "config": config,
        }
        (out / "provenance.json").write_text(json.dumps(record, indent=2) + "\n")
        return record


def main(names: list[str]) -> int:
    names = names or sorted(p.stem for p in (ROOT / "conf" / "exp").glob("*.yaml") if p.stem not in SKIP)
    bad = []
    for name in names:
        record = make(name)
        print(f"{name}: {record['status']} passed={record['passed']} -> experiments/{name}/figures/ "
              f"({len(record['figures'])} figures)", flush=True)
        if record["exit_code"] != 0:
            bad.append(name)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
