"""Command line: ``python -m dynamics.run +exp=NAME [key=value ...]`` (add ``-m`` to sweep).

The only module that knows Hydra. It composes ``conf/`` onto the typed schema, checks keys and values,
runs the task named by ``task:`` in Hydra's output directory, and keeps the run directory's
``summary.json`` true at every moment: ``running`` before the first step, then ``finished``,
``diverged``, ``failed`` or ``interrupted`` (SIGINT / SIGTERM, with the step reached).

``python -m dynamics.run --list`` (or the ``dynamics --list`` console script) lists the experiments
with their claims. JAX's persistent compilation cache is on by default (``DYNAMICS_COMPILE_CACHE=0``
turns it off; see ``compile_cache_dir``).

Exit codes: 0 finished or diverged (a diverging run is a result; a sweep goes on); 1 a failed run (or
a multirun with a failed point), or an OS error (one line naming the path); 2 bad input: a config
error, an unknown key, a compose error, a run directory in use; 130 / 143 interrupted by SIGINT /
SIGTERM.
"""

import contextlib
import dataclasses
import datetime
import importlib.util
import logging
import os
import re
import secrets
import signal
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dynamics.claims import failure_line
from dynamics.config import Config
from dynamics.validation import check_keys, validate
from dynamics.errors import ConfigError



def _conf_dir() -> Path:
    """The config directory: the source tree's ``conf/`` (beside ``src/``, an editable install), else
    the copy a wheel ships as package data (``dynamics/conf``, see setup.py)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise RuntimeError(f"config directory not found (neither {here.parents[1] / 'conf'} nor {here / 'conf'}): "
                       "reinstall dynamics (`pip install .` ships conf/ inside the package)")


CONF_DIR = _conf_dir()

ConfigStore.instance().store(name="schema", node=Config)  # conf/config.yaml's defaults name it first
# ${run_id:}: a short random suffix, the same for every use within one composed config (cached), so
# that two runs started in the same microsecond still get different default directories.
OmegaConf.register_new_resolver("run_id", lambda: secrets.token_hex(3), use_cache=True, replace=True)
log = logging.getLogger("dynamics")
logging.getLogger("jax").setLevel(logging.WARNING)

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}
# Statuses a run can end with; ``running`` while it goes on, ``killed`` (load_runs) when it died.
FINAL = ("finished", "diverged", "failed", "interrupted")
# Launcher presets and the extra that installs their Hydra plugin.
LAUNCHER_PLUGINS = {"slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
                    "joblib_local": ("hydra_plugins.hydra_joblib_launcher", "sweep")}


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. SLURM preemption), raised like Ctrl-C so the run records where it stopped."""

    signal = "SIGTERM"


def _on_sigterm(signum, frame):
    raise Terminated()


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def run(cfg, out_dir: str | Path, *, record_config_errors: bool = False) -> dict:
    """Run the task of a typed ``Config`` into ``out_dir`` and keep its summary.json true; return the
    summary.

    ``ConfigError`` propagates so the caller can report it. An invalid config is caught before anything
    is built; with ``record_config_errors`` (sweeps) a ``failed`` summary is written for it first.
    Errors found while building (e.g. ``data.n_train`` too large) always leave a ``failed`` summary.
    ``RunDirInUse`` propagates when another process runs in ``out_dir``; ``KeyboardInterrupt`` (SIGINT,
    ``Terminated``) after writing an ``interrupted`` summary.
    """
    from dynamics.io import RunDir, lock_run_dir
    from dynamics.loggers import attached, check_loggers

    try:
        validate(cfg)
        check_loggers(cfg.logger)  # an unknown logger, or one whose package is missing
    except ConfigError as err:
        if record_config_errors:
            RunDir(out_dir).write_summary({"status": "failed", "error": str(err), "name": cfg.name})
        raise
    lock = lock_run_dir(out_dir)
    try:
        with attached(cfg, out_dir):  # logger.names: wandb, tensorboard, mlflow (dynamics.loggers)
            return _run_locked(cfg, Path(out_dir))
    finally:
        lock.close()


def _run_locked(cfg, out_dir: Path) -> dict:
    from dynamics.io import RunDir, archive_previous, read_summary
    from dynamics.tasks import run_task

    previous = read_summary(out_dir)
    resume = cfg.resume
    if resume and previous and previous.get("status") in ("finished", "diverged"):
        log.info("resume: the run in %s already %s at step %s; nothing to do (its summary is kept)",
                 out_dir, previous["status"], previous.get("steps_completed"))
        return previous
    if resume and not any((out_dir / "checkpoints").glob("ckpt_*.npz")):
        log.info("resume: no checkpoint in %s; starting from step 0", out_dir / "checkpoints")
        resume = False
        cfg = dataclasses.replace(cfg, resume=False)
    if not resume:
        moved = archive_previous(out_dir)
        if moved is not None:
            log.info("the earlier run's outputs in %s were moved to %s", out_dir, moved)
    run_dir = RunDir(out_dir, resume=resume)
    base = {"name": cfg.name, "hparams": {"lr": cfg.optimizer.lr, "seed": cfg.seed},
            "started": _now(), "pid": os.getpid(), "host": os.uname().nodename}
    run_dir.write_summary({**base, "status": "running", "steps_completed": 0}, final=False)
    start = time.perf_counter()
    try:
        summary = run_task(cfg, run_dir)
    except ConfigError as err:
        run_dir.write_summary({**base, "status": "failed", "error": str(err)})
        raise
    except KeyboardInterrupt as err:
        stopped = run_dir.interrupted(err)
        run_dir.write_summary({**base, **stopped, "wall_time_s": time.perf_counter() - start})
        log.warning("%s: interrupted by %s at step %d (%s)", cfg.name, stopped["signal"],
                    stopped["steps_completed"], out_dir)
        raise
    except OSError as err:  # disk full, read-only: record it if the disk still lets us, then report
        with contextlib.suppress(OSError):
            run_dir.write_summary({**base, "status": "failed", "error": _os_error(err)})
        raise
    except Exception as err:  # recorded, so a sweep can go on
        log.error("run failed:\n%s", traceback.format_exc())
        summary = {"status": "failed", "error": f"{type(err).__name__}: {err}",
                   "hparams": base["hparams"]}
    summary = {"name": cfg.name, **summary, "started": base["started"], "host": base["host"],
               "wall_time_s": time.perf_counter() - start}
    run_dir.write_summary(summary)
    if ("vmap_points" in summary or "seed_runs" in summary) and not run_dir.rows:
        run_dir.metrics_path.unlink(missing_ok=True)  # a sweep's parent: its points hold the metrics
    return summary


def _os_error(err: OSError) -> str:
    path = err.filename if err.filename is not None else "?"
    return f"{err.strerror or type(err).__name__}: {path}"


def to_config(dict_cfg: DictConfig):
    """The typed ``Config`` of a composed config; unknown keys fail (also ones added with ``+``)."""
    check_keys(OmegaConf.to_container(dict_cfg, resolve=False))
    return OmegaConf.to_object(dict_cfg)


class SweepTally(Callback):
    """At the end of a multirun: one line counting its runs by status (vmapped points and seeds
    count as runs), and exit code 1 when a run failed, was interrupted or killed."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        import warnings

        from dynamics.io import load_runs

        sweep_dir = Path(str(config.hydra.sweep.dir))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            counts = Counter(r.get("status") for r in load_runs(sweep_dir))
        order = ("finished", "diverged", "failed", "interrupted", "killed", "running")
        parts = [f"{counts[s]} {s}" for s in order if counts[s]]
        print(f"sweep {sweep_dir}: {sum(counts.values())} runs: {', '.join(parts) or 'none'}",
              file=sys.stderr, flush=True)
        if counts["failed"] or counts["interrupted"] or counts["killed"]:
            sys.exit(EXIT_FAILED)


_entered = False  # whether Hydra got as far as calling the task function (else: a compose error)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _main(dict_cfg: DictConfig) -> str | None:
    global _entered
    _entered = True
    from dynamics.io import RunDirInUse

    enable_compile_cache()  # again in a launcher's worker process (joblib, submitit), which skips main()

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    out_dir = hydra_cfg.runtime.output_dir
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cfg = to_config(dict_cfg)
        summary = run(cfg, out_dir, record_config_errors=multirun)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        if multirun:
            return "failed"
        sys.exit(EXIT_BAD_INPUT)
    except RunDirInUse as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt as err:
        name = getattr(err, "signal", "SIGINT")
        print(f"interrupted by {name}: {out_dir} (status: interrupted; resume=true continues from the "
              "newest checkpoint)", file=sys.stderr)
        sys.exit(EXIT_SIGNAL[name])
    except OSError as err:
        print(f"error: {_os_error(err)}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    verdict = summary.get("verdict") or {}
    log.info("%s: status=%s %s (%s)", summary.get("name", cfg.name), summary["status"],
             failure_line(verdict), out_dir)
    if summary["status"] == "failed" and not multirun:
        sys.exit(EXIT_FAILED)
    return summary["status"]


# Free mappings (typed ``dict`` in the schema): their keys are set on the command line without Hydra's
# ``+`` (``optimizer.args.b1=0.95``); ``main`` rewrites such an override to ``++`` (add or override).
FREE_MAPPINGS = ("optimizer.args.", "optimizer.kwargs.", "model.kwargs.", "vmap.args.", "claim.criteria.")


def _free_mapping_overrides(argv: list[str]) -> list[str]:
    """``optimizer.args.b1=0.95`` → ``++optimizer.args.b1=0.95``; other arguments unchanged."""
    return [f"++{arg}" if arg.startswith(FREE_MAPPINGS) and "=" in arg else arg for arg in argv]


def _launcher_hint(argv: list[str]) -> str | None:
    """A one-line hint when a launcher preset is chosen whose Hydra plugin is not installed."""
    for arg in argv:
        if arg.startswith("hydra/launcher="):
            preset = arg.split("=", 1)[1]
            if preset in LAUNCHER_PLUGINS:
                module, extra = LAUNCHER_PLUGINS[preset]
                try:
                    found = importlib.util.find_spec(module) is not None
                except ModuleNotFoundError:
                    found = False
                if not found:
                    return (f"config error: hydra/launcher={preset} needs its Hydra plugin: "
                            f"pip install -e '.[{extra}]'")
    return None


def _one_line(err: BaseException) -> str:
    """Hydra's error and its cause in one line (``Could not override 'optimizer.lrr': Key 'lrr' not in
    'OptimizerConfig'``), without Hydra's hint to append the key with ``+`` (unknown keys fail too)."""
    first = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
    cause = err.__cause__
    if cause is not None and str(cause).strip() and str(cause) not in str(err):
        first += ": " + str(cause).strip().splitlines()[0]
    return first


# JAX's persistent compilation cache (on by default for the command line): unset, 1 or true: the user
# cache directory; 0, false or off: no cache; anything else: that directory. A JAX_COMPILATION_CACHE_DIR
# set by the user wins (JAX reads it itself). Compiled programs are keyed by their HLO, the compile options
# and the jax/jaxlib versions, so the cache never changes results; it only skips recompiling.
COMPILE_CACHE_ENV = "DYNAMICS_COMPILE_CACHE"


def compile_cache_dir() -> Path | None:
    """The persistent compilation cache's directory ``DYNAMICS_COMPILE_CACHE`` asks for (None: off);
    by default ``$XDG_CACHE_HOME/dynamics/jax`` (``~/.cache/dynamics/jax``)."""
    value = os.environ.get(COMPILE_CACHE_ENV, "1").strip()
    if value.lower() in ("0", "false", "off", "no"):
        return None
    if value.lower() in ("", "1", "true", "on", "yes"):
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dynamics" / "jax"
    return Path(value).expanduser()


def enable_compile_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache in ``compile_cache_dir()`` for every program, however
    quick to compile (a run compiles dozens of small ones); return the directory, or None when off. Must
    run before the first compilation."""
    import jax

    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    path = compile_cache_dir()
    if path is None:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def experiments(conf_dir: Path | None = None) -> dict[str, str]:
    """``{name: claim}`` for each ``conf/exp/NAME.yaml``: the first sentence of its header comment (the
    comment lines at the top, after ``# @package``), read as text without composing the config."""
    found = {}
    for path in sorted(Path(conf_dir or CONF_DIR).glob("exp/*.yaml")):
        lines = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            text = line.lstrip("#").strip()
            if not text.startswith("@package"):
                lines.append(text)
        header = " ".join(part for part in lines if part)
        # the first sentence: up to a full stop followed by a capital (not "et al. 2021", "s.t. Zx")
        found[path.stem] = re.split(r"(?<=[.!?])(?<!s\.t\.)(?<!e\.g\.)(?<!i\.e\.)\s+(?=[A-Z])",
                                    header, maxsplit=1)[0]
    return found


def _print_experiments() -> None:
    import shutil

    names = experiments()
    width = max(map(len, names), default=0)
    # on a terminal each claim is cut to the window's width; piped, it is printed whole
    columns = shutil.get_terminal_size((0, 0)).columns if sys.stdout.isatty() else 0
    print(f"{len(names)} experiments (python -m dynamics.run +exp=NAME, or dynamics +exp=NAME):")
    for name, claim in names.items():
        room = columns - width - 4
        if columns and 10 < room < len(claim):
            claim = claim[:room - 1].rstrip() + "…"
        print(f"  {name:<{width}}  {claim}")


def main() -> None:
    """The command line: Hydra's entry point with the exit codes of this module's docstring.

    ``--list`` prints the experiments (``conf/exp/*.yaml``) with their one-line claims. JAX's persistent
    compilation cache is on (``DYNAMICS_COMPILE_CACHE``, see ``compile_cache_dir``).

    Hydra is asked to raise its errors (``HYDRA_FULL_ERROR=1``) so that they are reported here: a
    compose or override error as one line (Hydra's message and its cause) with exit 2, an OS error (Hydra creating the output
    directory on a read-only or full disk) as one line with exit 1. Set ``HYDRA_FULL_ERROR=1`` yourself
    for the full traceback.
    """
    if sys.argv[1:] and sys.argv[1] in ("--list", "-l", "--list-experiments"):
        _print_experiments()
        return
    hint = _launcher_hint(sys.argv[1:])
    if hint:
        print(hint, file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    sys.argv[1:] = _free_mapping_overrides(sys.argv[1:])
    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    enable_compile_cache()
    try:
        _main()
    except Exception as err:
        if full:
            raise
        if isinstance(err, OSError) and not isinstance(err, HydraException):
            print(f"error: {_os_error(err)}", file=sys.stderr)
            sys.exit(EXIT_FAILED)
        if not _entered:  # compose and override errors: one line, Hydra's first line and its cause's
            print(f"config error: {_one_line(err)}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
