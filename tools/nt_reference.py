"""Golden values from neural-tangents 0.6.5 for the project's NTK kernels: writes tests/data/nt_reference.npz.

Runs only in a pinned side environment, never in the package's own (neural-tangents fails to import on
jax >= 0.5). Build it and run this script with:

    python3 -m venv /tmp/ntenv
    /tmp/ntenv/bin/pip install "jax==0.4.23" "jaxlib==0.4.23" "numpy<2" "scipy<1.13" "neural-tangents==0.6.5"
    OPENBLAS_NUM_THREADS=1 /tmp/ntenv/bin/python tools/nt_reference.py [--out tests/data/nt_reference.npz]

(pip pulls tensorflow as a dependency of neural-tangents; it is not used here.) Everything is float64.

The file holds (keys; shapes):

- ``x1`` (4, 5), ``x2`` (3, 5): inputs (fixed NumPy seed 0).
- Infinite width, ``stax.serial(*[Dense(1, W_std, b_std), act] * depth, Dense(1, W_std, b_std))`` in NTK
  parameterization, ``W_std = 1.5``, ``b_std = 0.1`` (``b_std = None`` for the ``_nobias`` entries):
  ``inf_{relu|erf}_d{1|2}[_nobias]_{nngp|ntk}_{11|12}``, the kernel between x1 and x1 (``11``, (4, 4))
  or x1 and x2 (``12``, (4, 3)).
- Empirical NTK of the finite net ``Dense(16), Relu, Dense(16), Relu, Dense(3)`` (W_std 1.5, b_std 0.1,
  NTK parameterization) at stored parameters ``p{layer}_W`` (in, out) and ``p{layer}_b`` (out,):
  ``entk_full`` (4, 3, 3, 3) with ``trace_axes=()`` and ``entk_trace`` (4, 3) with ``trace_axes=(-1,)``
  (the mean over logits), and its outputs ``entk_f1`` (4, 3).
- ``versions``: the library versions used.
"""

import argparse
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import neural_tangents as nt  # noqa: E402
import numpy as np  # noqa: E402
from neural_tangents import stax  # noqa: E402

W_STD, B_STD = 1.5, 0.1
ROOT = Path(__file__).resolve().parents[1]


def infinite(arrays, x1, x2):
    acts = {"relu": stax.Relu, "erf": stax.Erf}
    for name, act in acts.items():
        for depth in (1, 2):
            for suffix, b_std in (("", B_STD), ("_nobias", None)):
                layers = []
                for _ in range(depth):
                    layers += [stax.Dense(1, W_std=W_STD, b_std=b_std), act()]
                layers.append(stax.Dense(1, W_std=W_STD, b_std=b_std))
                _, _, kernel_fn = stax.serial(*layers)
                for tag, other in (("11", None), ("12", x2)):
                    k = kernel_fn(x1, other, ("nngp", "ntk"))
                    arrays[f"inf_{name}_d{depth}{suffix}_nngp_{tag}"] = np.asarray(k.nngp)
                    arrays[f"inf_{name}_d{depth}{suffix}_ntk_{tag}"] = np.asarray(k.ntk)


def empirical(arrays, x1, x2):
    init_fn, apply_fn, _ = stax.serial(
        stax.Dense(16, W_std=W_STD, b_std=B_STD), stax.Relu(),
        stax.Dense(16, W_std=W_STD, b_std=B_STD), stax.Relu(),
        stax.Dense(3, W_std=W_STD, b_std=B_STD))
    _, params = init_fn(jax.random.PRNGKey(1), x1.shape)
    dense = [p for p in params if p]  # Relu layers have empty params
    for i, (w, b) in enumerate(dense):
        arrays[f"p{i}_W"] = np.asarray(w)
        arrays[f"p{i}_b"] = np.asarray(b)
    full = nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)(x1, x2, params)
    trace = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0)(x1, x2, params)
    arrays["entk_full"] = np.asarray(full)
    arrays["entk_trace"] = np.asarray(trace)
    arrays["entk_f1"] = np.asarray(apply_fn(params, x1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "tests" / "data" / "nt_reference.npz"))
    args = parser.parse_args()
    rng = np.random.RandomState(0)
    x1, x2 = rng.randn(4, 5), rng.randn(3, 5)
    arrays = {"x1": x1, "x2": x2}
    infinite(arrays, x1, x2)
    empirical(arrays, x1, x2)
    arrays["versions"] = np.array(f"jax {jax.__version__}, neural-tangents {nt.__version__}, "
                                  f"numpy {np.__version__}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}: {len(arrays)} arrays, {Path(args.out).stat().st_size} bytes")


if __name__ == "__main__":
    main()
