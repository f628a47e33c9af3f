"""Fixtures shared by the tests: tiny MNIST files, the real datasets when present, running a script."""
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # import models, utils, vae and gan from the repository root

# The real MNIST and Fashion-MNIST, kept beside the repository on the machines that develop and test it.
REAL_DATA = ROOT.parent / "shared" / "data"
needs_real_mnist = pytest.mark.skipif(not (REAL_DATA / "MNIST" / "raw").is_dir(),
                                      reason=f"the real MNIST is not in {REAL_DATA}")
needs_real_fashion_mnist = pytest.mark.skipif(not (REAL_DATA / "FashionMNIST" / "raw").is_dir(),
                                              reason=f"the real Fashion-MNIST is not in {REAL_DATA}")

SCRIPTS = ["vae.py", "gan.py"]
CHECKPOINT = {"vae.py": "vae.pt", "gan.py": "gan.pt"}  # what each script saves in --out-dir

# Any download attempt goes to a closed local port and fails at once: no test uses the network.
OFFLINE_ENV = {**os.environ, "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
               "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "",
               "NO_PROXY": ""}


def write_idx(path, tensor):
    """Write a uint8 tensor as an IDX file, the format of MNIST's raw files."""
    magic = 0x0800 + tensor.dim()  # 0x08: unsigned bytes, then the number of dimensions
    with open(path, "wb") as f:
        f.write(struct.pack(f">I{tensor.dim()}I", magic, *tensor.shape))
        f.write(tensor.contiguous().numpy().tobytes())


def make_tiny_mnist(root, n_train=300, n_test=100, folder="MNIST", seed=0):
    """MNIST-shaped random images in torchvision's layout, root/<folder>/raw/.

    Each image's first pixel is 25 times its label, so tests can check that images and
    labels stay paired. `folder` FashionMNIST makes a tiny Fashion-MNIST instead.
    """
    g = torch.Generator().manual_seed(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, n in [("train", n_train), ("t10k", n_test)]:
        labels = torch.arange(n, dtype=torch.uint8) % 10
        images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        images[:, 0, 0] = labels * 25
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return Path(root)


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory):
    """A --data-dir with a tiny MNIST and a tiny Fashion-MNIST of other random images."""
    root = make_tiny_mnist(tmp_path_factory.mktemp("data"))
    return make_tiny_mnist(root, folder="FashionMNIST", seed=1)


def grey_pixels(image):
    """A PIL image (or the current frame of a GIF) as a uint8 tensor of shape (height, width)."""
    return torch.from_numpy(np.array(image.convert("L")))


def run_script(*args, check=True):
    """Run `python <script> <args>` from the repository root, offline, as a user would."""
    result = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=OFFLINE_ENV,
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result
