"""Write the example data set as .npz: ``python examples/custom/make_data.py out.npz``."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from examples.custom import blobs  # noqa: E402

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "blobs.npz"
    np.savez(out, **blobs())
    print(out)
