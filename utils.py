"""What vae.py and gan.py share: resumed options, the device, the data, the likelihood, the files and the pictures."""
import csv
import math

import torch
import torchvision
from matplotlib.figure import Figure
from torchvision.utils import make_grid

DATASETS = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}
X_SHAPE = (1, 28, 28)  # one image of either: one channel of 28x28 pixels
FASHION = ", ".join(f"{i} {name}" for i, name in enumerate(DATASETS["fashion-mnist"].classes))  # for --label's help


def resumed(parser, argv, path, kept):
    """--resume: argv parsed again, the checkpoint's options its defaults, but for this run's folders and device."""
    config = torch.load(path, map_location="cpu", weights_only=True)["config"]
    parser.set_defaults(**{key: value for key, value in config.items() if key not in ["out_dir", "data_dir", "device"]})
    args = parser.parse_args(argv)
    for name in [name for name in kept if getattr(args, name) != config[name]]:  # `kept` cannot change: said if typed
        print(f"--{name.replace('_', '-')}: the checkpoint's {config[name]}, not {getattr(args, name)}", flush=True)
        setattr(args, name, config[name])
    return args


def get_device(name):
    """The torch.device for --device: auto picks the accelerator that PyTorch finds (CUDA, MPS), else the CPU."""
    if name == "auto":
        name = torch.accelerator.current_accelerator().type if torch.accelerator.is_available() else "cpu"
    print(f"device: {name}", flush=True)
    return torch.device(name)


def load_data(name, data_dir, batch_size, device):
    """The training and test loaders (the test set in order, 1000 a batch) and the class names: see --data-dir."""
    train, test = (DATASETS[name](data_dir, train=split, download=True) for split in (True, False))
    return (BatchLoader(train.data, train.targets, batch_size, device),
            BatchLoader(test.data, test.targets, 1000, device, shuffle=False),
            [c.split(" - ")[0] for c in train.classes])  # "0 - zero": 0


class BatchLoader:
    """Batches (images (B, 1, 28, 28) in [0, 1], labels) as DataLoader with ToTensor, cut from a split on the device."""

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
    """log Ber(x | p) = x log p + (1 - x) log(1 - p), elementwise: finite at p = 0 or 1 (where the slide adds 1e-6)."""
    tiny = torch.finfo(p.dtype).tiny
    return x * torch.log(p.clamp(min=tiny)) + (1 - x) * torch.log((1 - p).clamp(min=tiny))


def fixed_noise(z_dim, conditional, device):
    """The z of every epoch's samples (64, or 8 each drawn as every class, a row each), and those classes."""
    z = torch.randn(8 if conditional else 64, z_dim, device=device).repeat(10 if conditional else 1, 1)
    return z, torch.arange(10, device=device).repeat_interleave(8) if conditional else None


def rngs(device):
    """The random number generators that a run on `device` draws from: the CPU's, and a GPU's own (its noise)."""
    return [torch] if device.type == "cpu" else [torch, torch.get_device_module(device)]


def write_metrics(path, metrics):  # metrics.csv: a header, then a row for each epoch done
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([metrics[0].keys(), *(row.values() for row in metrics)])


def sample_inputs(n, label, config, device):
    """--sample's z, classes and images to a row: a conditional model draws `label`, or else class k in column k."""
    if label is not None and not config["conditional"]:  # it would be ignored
        raise SystemExit("error: --label: this model was trained without --conditional; train one with --conditional")
    z, y = torch.randn(n, config["z_dim"], device=device), None
    if config["conditional"]:
        y = torch.arange(n, device=device) % 10 if label is None else torch.full((n,), label, device=device)
    return z, y, min(n, 10) if config["conditional"] and label is None else math.ceil(math.sqrt(n))


def plot_image_table(images, column_names, row_names, title):
    """A figure of `images` in a table, row by row, whose columns and rows are named."""
    ax = Figure(figsize=(0.7 * len(column_names) + 1.5, 0.7 * len(row_names) + 0.6)).subplots()
    grid = make_grid(images.cpu(), nrow=len(column_names), padding=2, pad_value=1)[0]
    ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([30 * i + 15 for i in range(len(column_names))], column_names, rotation=45, ha="right")
    ax.set_yticks([30 * i + 15 for i in range(len(row_names))], row_names)
    ax.tick_params(length=0)
    ax.set_title(title)
    return ax.figure
