"""Build hook (the project's metadata is in pyproject.toml): the packages under src/, plus the repository's
``conf/`` shipped inside the package as ``dynamics/conf`` (package data), so that an installed wheel runs
experiments without the source tree. ``dynamics.run.CONF_DIR`` prefers the source tree's ``conf/``."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
CONF = ["dynamics.conf"] + sorted(
    "dynamics.conf." + ".".join(d.relative_to(ROOT / "conf").parts)
    for d in (ROOT / "conf").rglob("*") if d.is_dir() and any(d.glob("*.yaml")))

setup(
    packages=find_packages("src") + CONF,
    package_dir={"": "src", "dynamics.conf": "conf"},
    package_data={name: ["*.yaml"] for name in CONF},
)
