"""A task's checks of its own keys run in ``validate``, before the run directory exists: a bad value
of a family key fails in one line and leaves nothing on disk."""

import pytest

from dynamics.errors import ConfigError
from dynamics.run import run

CASES = [
    (("+exp=sde_quadratic", "sde.quadratic.c2=1e9"), "sde.quadratic.c2=1000000000.0 is invalid"),
    (("+exp=sde_quadratic", "sde.quadratic.kappas=[0.3]"), "sde.quadratic.kappas=0.3 is invalid"),
    (("+exp=central_flow", "optimizer.name=adam"), "optimizer.name='adam' is invalid: allowed gd | "
                                                   "rmsprop"),
    (("+exp=ntk_prompt", "train.chunk=7"), "train.steps=1000 is invalid: allowed a multiple of "
                                           "train.chunk = 7"),
    (("+exp=svag", "train.batch_size=null"), "train.batch_size=None is invalid: allowed an integer "
                                             "(SVAG's batch)"),
    (("+exp=sqrt_scaling", "probes.eval.every=0"), "probes.eval.every=0 is invalid"),
    (("+exp=ntk_prompt", "claim.rule=median"), "claim.rule='median' is invalid: allowed pass_fraction | mean"),
    (("+exp=ntk_prompt", "ntk.prompt.reported=[head,sgd]"), "ntk.prompt.reported=['head', 'sgd'] is invalid: "
                                                           "allowed a list of head | adam"),
    (("+exp=eos_optimizers", "eos_optimizers.runs.adam.optimizer.name=sam"),
     "eos_optimizers.runs.adam: optimizer.name='sam' cannot run"),
]


@pytest.mark.parametrize("overrides, message", CASES, ids=[c[0][0] for c in CASES])
def test_family_keys_fail_before_the_run_directory_exists(compose, tmp_path, overrides, message):
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        run(compose(*overrides), out)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert not out.exists()
