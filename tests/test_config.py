"""Configs compose and validate; bad keys, types and values fail naming the key."""

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from dynamics.validation import validate
from dynamics.errors import ConfigError
from dynamics.run import CONF_DIR

EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "exp").glob("*.yaml"))


def test_there_are_experiments():
    assert {"eos", "smoke"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_every_experiment_composes_and_validates(compose, exp):
    cfg = compose(f"+exp={exp}")
    validate(cfg)
    assert cfg.name == exp
    assert (Path(CONF_DIR).parent / "experiments" / exp / "README.md").exists() or exp == "smoke"


def test_eos_composes_to_the_documented_setting(compose):
    cfg = compose("+exp=eos")
    assert (cfg.model.name, cfg.model.widths, cfg.model.activation) == ("mlp", [64, 64], "tanh")
    assert (cfg.data.name, cfg.data.n_train, cfg.data.dim, cfg.data.num_classes) == (
        "synthetic", 1000, 32, 4)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.train.batch_size) == ("gd", 0.5, None)
    assert cfg.train.loss == "mse" and cfg.probes.sharpness.every == 10


def test_typo_in_key_fails_at_compose_naming_it(compose):
    with pytest.raises(ConfigCompositionException) as err:
        compose("+exp=eos", "optimizer.lrr=0.1")
    assert "lrr" in str(err.value.__cause__ or err.value)


def test_wrong_type_fails_at_compose_naming_it(compose):
    with pytest.raises(ConfigCompositionException) as err:
        compose("+exp=eos", "optimizer.lr=abc")
    text = str(err.value) + str(err.value.__cause__)
    assert "lr" in text and "abc" in text


@pytest.mark.parametrize(
    "override, key, allowed",
    [
        ("optimizer.lr=-0.1", "optimizer.lr", "> 0"),
        ("optimizer.momentum=1.5", "optimizer.momentum", "[0, 1)"),
        ("model.name=transformer", "model.name", "cnn, mlp"),
        ("optimizer.name=lionn", "optimizer.name", "lion"),
        ("optimizer.name=sam", "optimizer.name", "two-gradient step"),
        ("+optimizer.args.bb=1", "optimizer.args.bb", "allowed none"),
        ("data.name=imagenet", "data.name", "mnist1d"),
        ("model.activation=swishy", "model.activation", "tanh"),
        ("train.loss=hinge", "train.loss", "cross_entropy, mse"),
        ("precision=float16", "precision", "float32 | float64"),
        ("probes.sharpness.every=7", "probes.sharpness.every", "multiple of train.chunk"),
        ("train.steps=0", "train.steps", "> 0"),
        ("+claim.criteria.median=1", "claim.criteria.median", "median_range"),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_key(compose, override, key, allowed):
    cfg = compose("+exp=eos", override)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    message = str(err.value)
    assert message.startswith(key) and allowed in message and "\n" not in message


@pytest.mark.parametrize("preset, plugin, target", [
    ("joblib_local", "hydra_plugins.hydra_joblib_launcher", "JoblibLauncher"),
    ("slurm", "hydra_plugins.hydra_submitit_launcher", "SlurmLauncher"),
])
def test_launcher_presets_compose(preset, plugin, target):
    pytest.importorskip(plugin)
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+exp=eos", f"hydra/launcher={preset}"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    if preset == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.array_parallelism == 16


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_every_experiment_has_only_schema_keys(exp):
    """The CLI's unknown-key check (which also catches ``+key=value``) accepts every experiment."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dynamics.validation import check_keys

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"+exp={exp}"])
    check_keys(OmegaConf.to_container(cfg, resolve=False))
