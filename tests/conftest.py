"""Shared by the tests: tiny MNIST files, the real data sets in $DATA_DIR (default data/), a script's main().

`python -m pytest` runs the fast tests, on tiny data made here; `python -m pytest -m slow` the ones that train on the
real MNIST: skipped where DATA_DIR does not hold it, but in CI (CI set) failed."""
import contextlib
import importlib
import io
import os
import socket
import struct
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # import models, utils, vae and gan from the repository root
import digits  # noqa: E402  (tests/digits.py, which imports utils)
import utils  # noqa: E402

RAW_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
SCRIPTS = ["vae.py", "gan.py"]
CHECKPOINT = {"vae.py": "vae.pt", "gan.py": "gan.pt"}  # what each script saves in --out-dir
# A run of a few batches on tiny data; z of 3 spares the VAE's latent-space plots, which only z = 2 draws.
TINY = ["--epochs", 1, "--batch-size", 50, "--device", "cpu", "--z-dim", 3]
CONDITIONAL = [*TINY, "--conditional"]

DATA_DIR = Path(os.environ.get("DATA_DIR", ROOT / "data"))  # where the slow tests read the real data sets


def require_real(folder):
    """DATA_DIR, where it holds the real `folder` (MNIST or FashionMNIST), or else skip the test (in CI: fail it)."""
    if not all((DATA_DIR / folder / "raw" / name).is_file() for name in RAW_FILES):
        why = f"the real {folder} is not in {DATA_DIR}/{folder}/raw/: set DATA_DIR to the --data-dir that holds it"
        if os.environ.get("CI"):
            pytest.fail(f"{why}, and CI must run the slow tests")
        pytest.skip(why)
    return DATA_DIR


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains on the real MNIST for minutes; `python -m pytest -m slow`")
    if not config.option.markexpr:  # a plain `python -m pytest` leaves the slow tests out
        config.option.markexpr = "not slow"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test uses the network: in this process, opening a connection fails at once."""
    def refuse(*args, **kwargs):
        raise OSError("the tests run offline")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def make_tiny_mnist(root, n_train=300, n_test=100, folder="MNIST", seed=0):
    """MNIST-shaped random images in torchvision's layout, root/<folder>/raw/ (MNIST or FashionMNIST). Each image's
    first pixel is 25 times its label, so that tests can check that images and labels stay paired."""
    g = torch.Generator().manual_seed(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, n in [("train", n_train), ("t10k", n_test)]:
        labels = torch.arange(n, dtype=torch.uint8) % 10
        images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        images[:, 0, 0] = labels * 25
        for kind, data in [("images-idx3", images), ("labels-idx1", labels)]:  # IDX files: 0x08 for unsigned bytes,
            header = struct.pack(f">I{data.dim()}I", 0x0800 + data.dim(), *data.shape)  # the dimensions, the sizes
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + data.numpy().tobytes())
    return Path(root)


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory):
    """A --data-dir with a tiny MNIST (300 training images) and a tiny Fashion-MNIST (200, of other random images)."""
    root = make_tiny_mnist(tmp_path_factory.mktemp("data"))
    return make_tiny_mnist(root, n_train=200, folder="FashionMNIST", seed=1)


def train_once(tmp_path_factory, data_dir, options):
    out = tmp_path_factory.mktemp("trained")
    for script in SCRIPTS:
        run(script, "--data-dir", data_dir, "--out-dir", out / script, *options)
    return {script: out / script for script in SCRIPTS}


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_mnist):
    """script -> the --out-dir of one TINY epoch, shared by the tests that only read it or copy it."""
    return train_once(tmp_path_factory, tiny_mnist, TINY)


@pytest.fixture(scope="session")
def conditional(tmp_path_factory, tiny_mnist):
    """script -> the --out-dir of one CONDITIONAL epoch, likewise."""
    return train_once(tmp_path_factory, tiny_mnist, CONDITIONAL)


def grey_pixels(image):
    """A PIL image (or the current frame of a GIF) as a uint8 tensor of shape (height, width)."""
    return torch.from_numpy(np.array(image.convert("L")))


def grid_cells(grid, n, nrow):
    """The first n images of a grid the scripts saved (28 pixels, 2 apart, nrow to a row), as (28, 28) tensors."""
    rows, columns = (30 * (i // nrow) for i in range(n)), (30 * (i % nrow) for i in range(n))
    return [grid[2 + top:30 + top, 2 + left:30 + left] for top, left in zip(rows, columns)]


def run(script, *args):
    """Call `script`'s main(argv) in this process, as `python <script> <args>` would, and return what it printed."""
    module = importlib.import_module(script.removesuffix(".py"))
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        module.main([str(arg) for arg in args])
    return SimpleNamespace(stdout=stdout.getvalue(), stderr=stderr.getvalue())


def error_of(script, *args):
    """The one-line error with which `script` stops for these arguments: sys.exit's, or argparse's last line."""
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as stop, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(stderr):
        importlib.import_module(script.removesuffix(".py")).main([str(arg) for arg in args])
    message = stop.value.code if isinstance(stop.value.code, str) else stderr.getvalue().strip().splitlines()[-1]
    assert stop.value.code != 0 and len(message.splitlines()) == 1, message
    return message


@pytest.fixture(scope="session")
def digit_classifiers():
    """The judges of digits.py, trained once a session, the 10,000 real test digits (N, 1, 28, 28), their labels."""
    data_dir = require_real("MNIST")
    loader, test_loader, _ = utils.load_data("mnist", data_dir, 256, torch.device("cpu"))
    return digits.train_digit_classifiers(loader), test_loader.images.unsqueeze(1).float() / 255, test_loader.labels
