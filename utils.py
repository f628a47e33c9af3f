"""What vae.py and gan.py share: options, device and data; the Bernoulli likelihood; the run's files; an image table."""
import argparse
import contextlib
import csv
import math
import os
import re
import sys

import torch
import torchvision
from matplotlib.figure import Figure
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.utils import make_grid

DATASETS = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}
X_SHAPE = (1, 28, 28)  # one image of either: one channel of 28x28 pixels
FASHION = ", ".join(f"{i} {name}" for i, name in enumerate(DATASETS["fashion-mnist"].classes))  # for --label's help
# Every file that the scripts write in --out-dir, and its temporary name (see `atomic`).
OUTPUTS = re.compile(r"(\.tmp-\d+-)?((vae|gan)\.pt|metrics\.csv|progress\.gif|(samples|reconstruction)_\d+\.png|"
                     r"(generated|loss|progress|interpolation|class_grid|latent_space|latent_scatter|"
                     r"reconstruction_progress)\.png)")


def number(kind, at_least=-math.inf, above=-math.inf, below=math.inf):
    """An argparse type: a number of `kind` (int or float) in the range given, which nan and infinity never are."""
    bounds = {"at least": at_least, "above": above, "below": below}
    limits = " and ".join(f"{word} {bound}" for word, bound in bounds.items() if abs(bound) < math.inf)

    def parse(text):
        value = kind(text)
        if not (at_least <= value < below and value > above):
            raise argparse.ArgumentTypeError(f"must be {limits}, not {text}")
        return value
    parse.__name__ = kind.__name__  # so that argparse says "invalid int value: 'ten'"
    return parse


def get_device(name):
    """The torch.device for --device: auto picks CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    elif name != "cpu" and not (torch.cuda if name == "cuda" else torch.backends.mps).is_available():
        sys.exit(f"error: --device {name}: this machine has no {name.upper()} that PyTorch can use; try --device auto")
    print(f"device: {name}", flush=True)
    return torch.device(name)


def load_dataset(name, data_dir):
    """(train images, labels), (test images, labels) and the class names, read by torchvision from the raw files
    in <data_dir>/MNIST/raw/ (or FashionMNIST/raw/), which it downloads when one is missing."""
    dataset = DATASETS[name]
    raw = os.path.join(data_dir, dataset.__name__, "raw")
    paths = [os.path.join(raw, os.path.basename(url).removesuffix(".gz")) for url, _ in dataset.resources]
    if not all(map(os.path.exists, paths)):
        try:
            dataset(data_dir, download=True)
        except RuntimeError as e:  # no network, or every mirror down: the last one's error
            sys.exit(f"error: {dataset.__name__} is not in {raw} and could not be downloaded "
                     f"({str(e).strip().splitlines()[-1]}); put its raw files there "
                     f"({', '.join(map(os.path.basename, paths))}), or pass --data-dir with the folder that holds them")
    data = []
    for path, read in zip(paths, [read_image_file, read_label_file] * 2):
        try:
            data.append(read(path))
        except Exception as e:  # truncated, still gzip-compressed, a web page...: torchvision raises many kinds
            sys.exit(f"error: {path} is not one of {dataset.__name__}'s raw files ({e!r}); delete it and run again")
    for images, labels, images_path, labels_path in [data[:2] + paths[:2], data[2:] + paths[2:]]:
        if images.shape[1:] != X_SHAPE[1:] or len(images) != len(labels) or labels.unique().tolist() != [*range(10)]:
            sys.exit(f"error: {images_path} ({len(images)} images of {'x'.join(map(str, images.shape[1:]))} pixels) "
                     f"and {labels_path} ({len(labels)} labels of {labels.unique().tolist()}) are not 28x28 images "
                     f"with a label from 0 to 9 each; delete both and run again")
    return (data[0], data[1]), (data[2], data[3]), [c.split(" - ")[0] for c in dataset.classes]  # "0 - zero": 0


class BatchLoader:
    """Shuffled batches of (images as floats (B, 1, 28, 28) in [0, 1], labels), as DataLoader with ToTensor gives
    them, from a split held whole on the device: one indexing a batch, and no per-image conversions or workers."""

    def __init__(self, images, labels, batch_size, device, shuffle=True):
        self.images, self.labels = images.to(device), labels.to(device)
        self.batch_size, self.shuffle = batch_size, shuffle

    def __len__(self):
        return math.ceil(len(self.images) / self.batch_size)

    def __iter__(self):
        # The order is drawn on the CPU, so that it is the same on every device.
        order = torch.randperm(len(self.images)) if self.shuffle else torch.arange(len(self.images))
        for idx in order.to(self.images.device).split(self.batch_size):
            yield self.images[idx].unsqueeze(1).float().div_(255), self.labels[idx]


def log_bernoulli(x, p):
    """log Ber(x | p) = x log p + (1 - x) log(1 - p), elementwise; finite where p is 0 or 1, nan where p is nan."""
    # The slide adds 1e-6 to every p; F.binary_cross_entropy raises on a nan (on a GPU: crashes).
    tiny = torch.finfo(p.dtype).tiny
    return x * torch.log(p.clamp(min=tiny)) + (1 - x) * torch.log((1 - p).clamp(min=tiny))


@contextlib.contextmanager
def atomic(path):
    """Yield a temporary path beside `path`, this process's alone; once it is written, rename it to `path` in one
    step, so that a stop at any moment leaves the old file or the new one, never half of one."""
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):  # the writing failed
            os.remove(tmp)


def start_fresh(out_dir, checkpoint_name):
    """Prepare --out-dir for a fresh run: delete the files that an earlier run of this script wrote there, or stop
    if it holds files of the scripts' names but not this script's checkpoint (they are not its to replace)."""
    os.makedirs(out_dir, exist_ok=True)
    earlier = sorted(name for name in os.listdir(out_dir) if OUTPUTS.fullmatch(name))
    if earlier and checkpoint_name not in earlier:
        more = " and more" if len(earlier) > 3 else ""
        sys.exit(f"error: --out-dir {out_dir} holds {', '.join(earlier[:3])}{more} but no {checkpoint_name} of an "
                 f"earlier run to replace; pass another --out-dir")
    if earlier:
        print(f"replacing the earlier run in {out_dir}: deleting its {len(earlier)} files", flush=True)
    # The checkpoint last: stopped half-way, the folder still holds it, and the next fresh run deletes the rest.
    for name in sorted(earlier, key=lambda name: name == checkpoint_name):
        os.remove(os.path.join(out_dir, name))


def save_checkpoint(path, nets, records, args, device):
    """Save the checkpoint, one plain dict (each of `nets` by name, the settings, the records of the epochs done, the
    random generators), then metrics.csv; an epoch not all finite stops the run unsaved, the last finite one kept."""
    metrics = records["metrics"]
    if metrics and not all(map(math.isfinite, metrics[-1].values())):
        sys.exit(f"error: epoch {len(metrics)} ended with {metrics[-1]}: training stopped, and the checkpoint of "
                 f"epoch {len(metrics) - 1} is kept; a smaller --lr may help")
    rng = {"cpu": torch.get_rng_state()}  # the batches' order; on a GPU, its own generator draws the noise
    if device.type != "cpu":
        rng[device.type] = torch.get_device_module(device).get_rng_state()
    with atomic(path) as tmp:
        torch.save({**{name: net.state_dict() for name, net in nets.items()}, "config": vars(args),
                    "epoch": len(metrics), "records": records, "rng": rng}, tmp)
    if metrics:
        with atomic(os.path.join(os.path.dirname(path), "metrics.csv")) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(metrics[0]))
            writer.writeheader()
            writer.writerows(metrics)


def resume(path, nets, args, fixed, device):
    """--resume: load the checkpoint at `path` into `nets` if it was trained with this run's `fixed` options, and
    return its records. The random generators go back to where they were: the run goes on as if never stopped."""
    if not os.path.isfile(path):
        sys.exit(f"error: --resume: there is no {path} to go on from; pass the --out-dir of an earlier run, or train "
                 f"without --resume")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for name in fixed:
        if checkpoint["config"][name] != getattr(args, name):
            sys.exit(f"error: --resume: the run was trained with {name} = {checkpoint['config'][name]}, not "
                     f"{getattr(args, name)}; --{name.replace('_', '-')} cannot change when resuming")
    print(f"going on from epoch {checkpoint['epoch']}" if checkpoint["epoch"] < args.epochs else f"--resume: all "
          f"{checkpoint['epoch']} epochs are done: drawing the final pictures again (for more, raise --epochs)")
    for name, net in nets.items():
        state = checkpoint[name]
        if isinstance(net, torch.optim.Optimizer):  # Adam's running averages, but this run's --lr (and --betas)
            state = {**state, "param_groups": net.state_dict()["param_groups"]}
        net.load_state_dict(state)
    torch.set_rng_state(checkpoint["rng"]["cpu"])
    if device.type != "cpu" and device.type in checkpoint["rng"]:  # bit for bit only on the device it trained on
        torch.get_device_module(device).set_rng_state(checkpoint["rng"][device.type])
    return checkpoint["records"]


def sample_inputs(path, args, device):
    """--sample: the checkpoint at `path`, and (z, classes, the grid's row length) to draw from. A conditional model
    draws the class --label, or else the classes in turn, ten to a row, so that column k holds class k."""
    if not os.path.isfile(path):
        sys.exit(f"error: --sample: there is no {path} to draw from; pass the --out-dir of a trained run, or train "
                 f"first")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    n, conditional = args.sample, checkpoint["config"]["conditional"]
    if args.label is not None and not conditional:
        sys.exit("error: --label: this model was trained without --conditional; train one with --conditional")
    z, y = torch.randn(n, checkpoint["config"]["z_dim"], device=device), None
    if conditional:
        y = torch.arange(n, device=device) % 10 if args.label is None else torch.full((n,), args.label, device=device)
    return checkpoint, z, y, min(n, 10) if conditional and args.label is None else math.ceil(math.sqrt(n))


def plot_image_table(images, column_names, row_names, title):
    """A figure of `images` in a table, row by row, whose columns and rows are named."""
    fig = Figure(figsize=(0.7 * len(column_names) + 1.5, 0.7 * len(row_names) + 0.6))
    ax = fig.subplots()
    grid = make_grid(images.cpu(), nrow=len(column_names), padding=2, pad_value=1)
    ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([30 * i + 15 for i in range(len(column_names))], column_names, rotation=45, ha="right")
    ax.set_yticks([30 * i + 15 for i in range(len(row_names))], row_names)
    ax.tick_params(length=0)
    ax.set_title(title)
    return fig
