"""What vae.py and gan.py share: device, seeding, the data, a fast batch loader, and saving results.

Every file is written atomically (to a temporary file beside it, then renamed), so a run that
is stopped half-way leaves the previous file or the new one, never a truncated one.
"""
import argparse
import contextlib
import csv
import math
import os
import signal
import struct
import sys

import matplotlib

matplotlib.use("Agg")  # draw to files only: works on machines without a display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from torchvision.utils import save_image  # noqa: E402

# --dataset: both are 28x28 grey images in 10 classes, in the same four files.
DATASETS = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}
X_SHAPE = (1, 28, 28)  # one image: one channel of 28x28 pixels
RAW_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def one_line_errors(parser):
    """Make argparse report a bad option in one line (it prints its whole usage first), still exiting 2."""
    parser.error = lambda message: parser.exit(2, f"{parser.prog}: error: {message} (see --help)\n")
    return parser


def positive(number, zero_ok=False):
    """An argparse type: a `number` (int or float) above 0 (or 0 too, if `zero_ok`), and finite."""
    def parse(text):
        try:
            value = number(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{' whole' if number is int else ''} number")
        in_range = value >= 0 if zero_ok else value > 0  # False for nan too
        if not in_range or math.isinf(value):
            raise argparse.ArgumentTypeError(f"must be a number {'of 0 or more' if zero_ok else 'above 0'}, not {text}")
        return value
    return parse


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


def check_idx_file(path):
    """Exit with a one-line error if `path` is not a complete IDX file (the format of MNIST's files)."""
    with open(path, "rb") as f:
        magic = f.read(4)  # 0, 0, 8 (unsigned bytes), then the number of dimensions
        if len(magic) < 4 or magic[:3] != b"\0\0\x08" or not 1 <= magic[3] <= 3:
            sys.exit(f"error: {path} is not an IDX file of unsigned bytes (it does not start as MNIST's files do); "
                     f"delete it and run again to download it")
        dims = f.read(4 * magic[3])
    if (len(dims) < 4 * magic[3]  # checked first: unpacking needs every byte of the sizes
            or os.path.getsize(path) != 4 + len(dims) + math.prod(struct.unpack(f">{magic[3]}I", dims))):
        sys.exit(f"error: {path} holds {os.path.getsize(path)} bytes, not what its header promises: "
                 f"the file is truncated or damaged; delete it and run again to download it")


def load_dataset(name, data_dir, train):
    """MNIST or Fashion-MNIST as (images uint8 (N, 28, 28), labels int64 (N,), the 10 class names).

    torchvision reads the four raw files from <data_dir>/MNIST/raw/ (or FashionMNIST/raw/)
    and downloads them when they are missing.
    """
    folder = DATASETS[name].__name__
    raw = os.path.join(data_dir, folder, "raw")
    for file in RAW_FILES:  # a half-downloaded file would otherwise fail deep inside torchvision
        if os.path.isfile(os.path.join(raw, file)):
            check_idx_file(os.path.join(raw, file))
    try:
        dataset = DATASETS[name](data_dir, train=train, download=True)
    except (RuntimeError, OSError) as e:  # no network, or a mirror that is down
        reason = str(e).strip().splitlines()[-1]  # the last attempt's error
        sys.exit(f"error: {folder} is not in {raw} and could not be downloaded ({reason}). "
                 f"Put the four raw files {', '.join(RAW_FILES)} there, or pass --data-dir "
                 f"with the folder that holds {folder}/raw/")
    classes = [c.split(" - ")[0] for c in dataset.classes]  # MNIST's read "0 - zero": the digit is enough
    return dataset.data, dataset.targets, classes


def log_bernoulli(x, p):
    """log Ber(x | p) = x log p + (1 - x) log(1 - p), elementwise, for x and p in [0, 1].

    p is clamped at the smallest normal float, so log(0) stays finite (the slide adds 1e-6 to
    every p instead, which shifts them all). Unlike F.binary_cross_entropy, a nan in p gives a nan
    that the training loop can report, where binary_cross_entropy raises (on a GPU: crashes).
    """
    tiny = torch.finfo(p.dtype).tiny
    return x * torch.log(p.clamp(min=tiny)) + (1 - x) * torch.log((1 - p).clamp(min=tiny))


class BatchLoader:
    """Shuffled batches of (images, labels) from one split held whole on the device.

    The data are small (47 MB as uint8), so the whole split lives on the device and a batch is
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


def prepare_out_dir(path):
    """Create --out-dir, or exit with a one-line error if it cannot be written."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        sys.exit(f"error: --out-dir {path} cannot be written: {e.strerror}")
    if not os.access(path, os.W_OK):
        sys.exit(f"error: --out-dir {path} cannot be written: permission denied")


def rng_state():
    """The state of every random-number generator in use, to save in a checkpoint."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


def read_checkpoint(path, script, option):
    """The checkpoint that `script` wrote at `path`, for `option` (--resume or --sample); a one-line error if none."""
    if not os.path.isfile(path):
        sys.exit(f"error: {option}: there is no checkpoint {path}; train first, without {option}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged file
        sys.exit(f"error: {option}: {path} is not a readable checkpoint ({type(e).__name__}); "
                 f"delete it or pass another --out-dir")
    if not isinstance(checkpoint, dict) or checkpoint.get("script") != script:
        sys.exit(f"error: {option}: {path} was not written by {script}")
    return checkpoint


def load_checkpoint(path, script, args, fixed_options):
    """The checkpoint to go on from with --resume; a one-line error if it does not fit `args`.

    `fixed_options` name the options that cannot change: the networks' shapes and the data.
    """
    checkpoint = read_checkpoint(path, script, "--resume")
    for option in fixed_options:
        if checkpoint["config"][option] != getattr(args, option):
            flag = "--" + option.replace("_", "-")
            sys.exit(f"error: --resume: the checkpoint was trained with {flag} {checkpoint['config'][option]}, "
                     f"not {getattr(args, option)}; {flag} cannot change when resuming")
    if checkpoint["epoch"] >= args.epochs:
        sys.exit(f"error: --resume: the checkpoint has done {checkpoint['epoch']} epochs already; "
                 f"ask for more with --epochs")
    return checkpoint


def stop_if_not_finite(losses, epoch):
    """Exit with a one-line error naming the first batch of `epoch` whose loss is nan or infinite."""
    values = torch.stack(losses).view(len(losses), -1)  # a row per batch
    bad = ~torch.isfinite(values)
    if bad.any():
        batch = bad.any(1).nonzero()[0, 0].item()
        sys.exit(f"error: the loss became {values[batch][bad[batch]][0].item()} at epoch {epoch}, "
                 f"batch {batch + 1}; training stopped and the checkpoint of epoch {epoch - 1} is kept. "
                 f"A smaller --lr may help")


class CtrlC:
    """The first Ctrl-C asks the training loop to stop after the current batch; a second quits at once.

    Every file is written atomically, so even quitting at once leaves no truncated file.
    """

    def __init__(self):
        self.pressed = False
        signal.signal(signal.SIGINT, self.handle)

    def handle(self, signum, frame):
        if self.pressed:
            print("\nCtrl-C again: quitting now", file=sys.stderr, flush=True)
            os._exit(130)
        self.pressed = True
        print("\nCtrl-C: stopping after this batch (press it again to quit at once)", file=sys.stderr, flush=True)


def exit_interrupted(out_dir, epochs_done):
    """After a Ctrl-C: say what was kept and how to go on, and exit with the usual status 130."""
    print(f"interrupted after {epochs_done} finished epochs: their checkpoint and pictures are in "
          f"{os.path.abspath(out_dir)}; to go on, run the same command with --resume")
    sys.exit(130)


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


def save_grid(images, path, nrow=None):
    """Save an image batch in [0, 1] as one PNG grid, `nrow` images to a row (by default, near square)."""
    with atomic_path(path) as tmp:
        save_image(images.detach().float().cpu(), tmp, nrow=nrow or math.ceil(math.sqrt(len(images))),
                   padding=2, pad_value=0.5)


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
