"""Shared test set-up: single-threaded BLAS (2-core machines), a PRNG key fixture."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Tests compile hundreds of small programs and run each briefly: skip XLA's expensive CPU backend passes
# (jax_disable_most_optimizations: backend optimization level 0, no expensive LLVM passes; no fast-math,
# so the arithmetic is the same). Set through the environment so that the command-line tests'
# subprocesses get it too; a test that runs long simulations takes the fixture xla_optimized.
# DYNAMICS_TEST_XLA_FAST=0: off.
_XLA_FAST = os.environ.get("DYNAMICS_TEST_XLA_FAST", "1") != "0"
if _XLA_FAST:
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"

import jax  # noqa: E402
import pytest  # noqa: E402

if _XLA_FAST:
    jax.config.update("jax_disable_most_optimizations", True)

# Many tests compile the same small programs (the same model and data shapes through fresh closures):
# JAX's persistent compilation cache, shared by the xdist workers, compiles each once per session. It
# keys programs by their HLO, options and jax version, so results are unchanged; set
# DYNAMICS_TEST_COMPILE_CACHE=0 to test without it.
if os.environ.get("DYNAMICS_TEST_COMPILE_CACHE", "1") != "0":
    import tempfile

    _cache = os.environ.get("DYNAMICS_TEST_COMPILE_CACHE")
    if _cache in (None, "", "1"):
        _cache = os.path.join(tempfile.gettempdir(), f"dynamics-test-jax-cache-{os.getuid()}")
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture
def xla_optimized():
    """Compile this test's programs with XLA's usual CPU passes: a test that simulates millions of
    path-steps spends more time running -O0 code than the passes cost (e.g. test_sde: ~3x faster)."""
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", _XLA_FAST)


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def x64():
    """Run a test with 64-bit floats, then restore the previous setting."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def compose():
    """``compose(*overrides) -> Config``: compose conf/ like the CLI and convert to dataclasses."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from dynamics.run import CONF_DIR

    def make(*overrides):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
        return OmegaConf.to_object(cfg)

    return make


@pytest.fixture
def interrupt_at(monkeypatch):
    """``interrupt_at(step, sig=SIGINT)``: send this process a real signal once training has reached
    ``step`` (SIGTERM goes through the command line's handler: a checkpoint, then KeyboardInterrupt)."""
    import os
    import signal

    from dynamics.run import _on_sigterm
    from dynamics.tasks.base import Progress

    handler, int_handler = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    def arm(step, sig=signal.SIGINT):
        original, armed = Progress.update, [True]

        def update(self, n, **postfix):
            original(self, n, **postfix)
            if armed[0] and self.done >= step:
                armed[0] = False
                os.kill(os.getpid(), sig)

        monkeypatch.setattr(Progress, "update", update)
        signal.signal(signal.SIGTERM, _on_sigterm)  # as the command line installs it
        # Python's own SIGINT handler, re-installed at the OS level: a C library may have set SIGINT to
        # SIG_IGN underneath Python (getsignal still reports the Python handler), and then the signal is
        # lost (seen: the SIGINT tests failed on xdist workers after some earlier tests, order-dependent)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    yield arm
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, int_handler)


@pytest.fixture
def resumes_identically(tmp_path, interrupt_at):
    """``resumes_identically(make_cfg, at)``: run ``make_cfg()`` whole; run it again, SIGTERM (a
    checkpoint, then KeyboardInterrupt) once training reaches step ``at``; resume it with
    ``make_cfg("resume=true")``; assert it finishes and that both metrics.jsonl are byte-identical.
    Returns the whole run's directory."""
    import signal

    from dynamics.run import run

    def check(make_cfg, at):
        run(make_cfg(), tmp_path / "whole")
        interrupt_at(at, signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            run(make_cfg(), tmp_path / "broken")
        assert run(make_cfg("resume=true"), tmp_path / "broken")["status"] == "finished"
        whole = (tmp_path / "whole" / "metrics.jsonl").read_bytes()
        assert (tmp_path / "broken" / "metrics.jsonl").read_bytes() == whole
        return tmp_path / "whole"

    return check
