"""Shared by the tests: tiny MNIST files, the real datasets when present, running a script's main().

`python -m pytest` runs the fast tests (tiny data made here, about a minute on 2 cores);
`python -m pytest -m slow` runs the ones that train on the real MNIST in ../shared/data.
"""
import contextlib
import importlib
import io
import os
import socket
import struct
import subprocess
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

# The real MNIST and Fashion-MNIST, kept beside the repository on the machines that develop and test it.
REAL_DATA = ROOT.parent / "shared" / "data"
needs_real_mnist = pytest.mark.skipif(not (REAL_DATA / "MNIST" / "raw").is_dir(),
                                      reason=f"the real MNIST is not in {REAL_DATA}")
needs_real_fashion_mnist = pytest.mark.skipif(not (REAL_DATA / "FashionMNIST" / "raw").is_dir(),
                                              reason=f"the real Fashion-MNIST is not in {REAL_DATA}")

SCRIPTS = ["vae.py", "gan.py"]
CHECKPOINT = {"vae.py": "vae.pt", "gan.py": "gan.pt"}  # what each script saves in --out-dir
TINY = ["--epochs", 1, "--batch-size", 50, "--device", "cpu"]  # a run of a few batches on tiny data

# Any download attempt in a separate process goes to a closed local port and fails at once.
OFFLINE_ENV = {**os.environ, "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
               "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "",
               "NO_PROXY": ""}


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


def write_idx(path, tensor, magic=None):
    """Write a uint8 tensor as an IDX file, the format of MNIST's raw files."""
    magic = magic or 0x0800 + tensor.dim()  # 0x08: unsigned bytes, then the number of dimensions
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


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_mnist):
    """script -> the --out-dir of one tiny epoch with the default networks, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("trained")
    for script in SCRIPTS:
        run(script, "--data-dir", tiny_mnist, "--out-dir", out / script, *TINY)
    return {script: out / script for script in SCRIPTS}


def grey_pixels(image):
    """A PIL image (or the current frame of a GIF) as a uint8 tensor of shape (height, width)."""
    return torch.from_numpy(np.array(image.convert("L")))


def run(script, *args):
    """Call `script`'s main(argv) in this process, as `python <script> <args>` would run it.

    Returns what it printed (.stdout, .stderr); an error exit raises SystemExit, as in a real run.
    """
    module = importlib.import_module(script.removesuffix(".py"))
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        module.main([str(arg) for arg in args])
    return SimpleNamespace(stdout=stdout.getvalue(), stderr=stderr.getvalue())


def error_of(script, *args, status=None):
    """The one-line error with which `script` stops for these arguments (and no traceback: no other exception)."""
    module = importlib.import_module(script.removesuffix(".py"))
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as stop, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(stderr):
        module.main([str(arg) for arg in args])
    code = stop.value.code
    # sys.exit("error: ...") prints its message and exits with 1; argparse prints, then exits with 2.
    message, exit_status = (code, 1) if isinstance(code, str) else (stderr.getvalue(), code)
    assert exit_status == (status or exit_status) and exit_status != 0, (exit_status, message)
    lines = message.strip().splitlines()
    assert len(lines) == 1, message
    return lines[0]


def run_script(*args, check=True):
    """Run `python <script> <args>` in a separate process from the repository root, offline, as a user would."""
    result = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=OFFLINE_ENV,
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def help_of(script):
    """What `python <script> --help` prints, with argparse's line wrapping undone."""
    module = importlib.import_module(script.removesuffix(".py"))
    stdout = io.StringIO()
    with pytest.raises(SystemExit) as stop, contextlib.redirect_stdout(stdout):
        module.main(["--help"])
    assert stop.value.code == 0
    return " ".join(stdout.getvalue().split())


@pytest.fixture(scope="session")
def digit_classifiers():
    """(the five classifiers, the 10,000 real test digits as (N, 1, 28, 28) floats, their labels), for the slow
    tests. The classifiers are trained once a session, on the real MNIST: about 6 minutes on 2 cores.
    """
    _, (images, labels), _ = utils.load_dataset("mnist", REAL_DATA)
    return digits.train_digit_classifiers(REAL_DATA), images.unsqueeze(1).float() / 255, labels
