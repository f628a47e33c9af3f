"""What vae.py and gan.py share: device, seeding, MNIST, a fast batch loader, and saving results.

Every file is written atomically (to a temporary file beside it, then renamed), so a run that
is stopped half-way leaves the previous file or the new one, never a truncated one.
"""
import contextlib
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")  # draw to files only: works on machines without a display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from torchvision.utils import save_image  # noqa: E402

MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def get_device(name="auto"):
    """The torch.device for --device: auto picks CUDA, then Apple's MPS, then the CPU."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if available[d])
    elif not available[name]:
        sys.exit(f"error: --device {name} was asked for, but this machine has no {name.upper()} "
                 f"device that PyTorch can use; try --device auto")
    if name == "cpu":
        # Adam's running averages of tiny gradients become subnormal floats, which the CPU
        # handles up to a hundred times slower; rounding them to zero costs nothing in accuracy.
        torch.set_flush_denormal(True)
    print(f"device: {name}")
    return torch.device(name)


def seed_everything(seed):
    """Seed every random-number generator that torch uses (CPU, CUDA and MPS)."""
    torch.manual_seed(seed)


def load_mnist(data_dir, train):
    """MNIST as (images uint8 of shape (N, 28, 28), labels int64 of shape (N,)).

    torchvision reads the four raw files from <data_dir>/MNIST/raw/ and downloads them
    when they are missing.
    """
    try:
        dataset = torchvision.datasets.MNIST(data_dir, train=train, download=True)
    except (RuntimeError, OSError) as e:  # no network, or a mirror that is down
        raw = os.path.join(data_dir, "MNIST", "raw")
        reason = str(e).strip().splitlines()[-1]  # the last attempt's error
        sys.exit(f"error: MNIST is not in {raw} and could not be downloaded ({reason}). "
                 f"Put the four raw files {', '.join(MNIST_FILES)} there, or pass --data-dir "
                 f"with the folder that holds MNIST/raw/")
    return dataset.data, dataset.targets


class BatchLoader:
    """Shuffled batches of (images, labels) from one split held whole on the device.

    MNIST is small (47 MB as uint8), so the whole split lives on the device and a batch is
    one index operation: no per-image PIL transform and no worker processes, the two costs
    that dominate torchvision's DataLoader + ToTensor for networks this small. Iterating
    yields float images of shape (B, 1, 28, 28) in [0, 1], as ToTensor would.
    """

    def __init__(self, images, labels, batch_size, device, shuffle=True):
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self):
        return -(-len(self.images) // self.batch_size)  # the last batch may be smaller

    def __iter__(self):
        n = len(self.images)
        # The permutation is drawn on the CPU so that the order is the same on every device.
        order = torch.randperm(n) if self.shuffle else torch.arange(n)
        order = order.to(self.images.device)
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.images[idx].unsqueeze(1).float().div_(255), self.labels[idx]


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it to `path` only once writing succeeded."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".tmp.{name}")  # same folder, so the rename is atomic
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_grid(images, path, nrow=8):
    """Save an image batch in [0, 1] as one PNG grid, `nrow` images to a row."""
    with atomic_path(path) as tmp:
        save_image(images.detach().float().cpu(), tmp, nrow=nrow, padding=2, pad_value=0.5)


def save_figure(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)


def save_checkpoint(checkpoint, path):
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def save_csv(rows, path):
    """Save a list of dicts (one per row, same keys) as a CSV file with a header."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
