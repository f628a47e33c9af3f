"""What vae.py and gan.py share: device, seeding, the data, a fast batch loader, and the bookkeeping
around their training loops: the out-dir, checkpoints and --resume, Ctrl-C, faults, saving results.

Every file is written atomically (to a temporary file beside it, then renamed), so a run that
is stopped half-way leaves the previous file or the new one, never a truncated one.
"""
import argparse
import contextlib
import csv
import functools
import math
import os
import re
import shutil
import struct
import sys
import time
from types import SimpleNamespace

try:  # a package missing, or torch and torchvision that do not fit together: one line, not a traceback
    import matplotlib
    matplotlib.use("Agg")  # draw to files only: works on machines without a display
    import matplotlib.pyplot as plt
    import torch
    import torchvision
    from torchvision.utils import make_grid, save_image
    from tqdm import tqdm
except (ImportError, RuntimeError) as e:
    sys.exit(f"error: {str(e).splitlines()[0]}; install what the scripts need with: pip install -r requirements.txt")
except KeyboardInterrupt:  # Ctrl-C while torch loads
    print("\ninterrupted", file=sys.stderr)
    sys.exit(130)

# --dataset: both are 28x28 grey images in 10 classes, in the same four files.
DATASETS = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}
X_SHAPE = (1, 28, 28)  # one image: one channel of 28x28 pixels
N_CLASSES = 10  # in both datasets
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


def seed(text):
    """An argparse type: a seed that torch.manual_seed takes, a whole number from 0 to 2**64 - 1."""
    if not text.isdigit() or int(text) >= 2 ** 64:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {2 ** 64 - 1}, not {text}")
    return int(text)


def get_device(name="auto"):
    """The torch.device for --device: auto picks CUDA, then Apple's MPS, then the CPU."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if available[d])
    elif not available[name]:
        sys.exit(f"error: --device {name} was asked for, but this machine has no {name.upper()} "
                 f"device that PyTorch can use; try --device auto")
    print(f"device: {name}", flush=True)
    return torch.device(name)


def seed_everything(seed):
    """Seed every random-number generator that torch uses (CPU, CUDA and MPS)."""
    torch.manual_seed(seed)


def read_idx(path, item_shape):
    """The uint8 tensor in the IDX file `path` (the format of MNIST's files): N items of `item_shape`.

    A file that is not what MNIST's files hold (28x28 images of unsigned bytes, or one byte per
    label) ends the run with a one-line error naming it, whatever its header says.
    """
    def damaged(why):
        sys.exit(f"error: {path} {why}; delete it and run again to download it")

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:  # a folder in its place, or no permission to read it
        sys.exit(f"error: {path} cannot be read: {e.strerror}")
    kind = "images" if item_shape else "labels"
    if data[:2] == b"\x1f\x8b":
        sys.exit(f"error: {path} is still gzip-compressed; uncompress it (gunzip) or delete it and run again")
    ndim = 1 + len(item_shape)
    header = 4 + 4 * ndim  # 0, 0, 8 (unsigned bytes), the number of dimensions, then each size
    if data[:4] != bytes([0, 0, 8, ndim]) or len(data) < header:
        damaged(f"is not an IDX file of {kind} (it does not start as MNIST's {kind} files do)")
    n, *shape = struct.unpack(f">{ndim}I", data[4:header])
    if tuple(shape) != item_shape:
        damaged(f"holds images of {'x'.join(map(str, shape))} pixels, not 28x28")
    if len(data) != header + n * math.prod(item_shape):
        damaged(f"holds {len(data)} bytes, not the {header + n * math.prod(item_shape)} its header promises: "
                f"the file is truncated or damaged")
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).view(n, *item_shape)


def read_split(raw, prefix):
    """One split's (images (N, 28, 28), labels (N,) as int64) from raw/, checked against each other."""
    images_path = os.path.join(raw, f"{prefix}-images-idx3-ubyte")
    labels_path = os.path.join(raw, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_path, X_SHAPE[1:]), read_idx(labels_path, ()).long()
    if len(images) != len(labels):
        sys.exit(f"error: {images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
                 f"the two files do not belong together: delete both and run again to download them")
    counts = torch.bincount(labels, minlength=N_CLASSES)
    if len(counts) > N_CLASSES:
        sys.exit(f"error: {labels_path} holds the label {len(counts) - 1}, but the classes are 0 to "
                 f"{N_CLASSES - 1}; delete it and run again to download it")
    if (counts == 0).any():  # the pictures show an image of every class
        sys.exit(f"error: {labels_path} holds no image of class {(counts == 0).nonzero()[0, 0].item()}; "
                 f"delete it and run again to download it")
    return images, labels


def class_names(name):
    """The 10 class names of --dataset `name`, as the plots and --help show them."""
    return [c.split(" - ")[0] for c in DATASETS[name].classes]  # MNIST's read "0 - zero": the digit is enough


def load_dataset(name, data_dir):
    """MNIST or Fashion-MNIST: (train images, train labels), (test images, test labels), the 10 class names.

    Images are uint8 (N, 28, 28), labels int64 (N,). The four raw files are read from
    <data_dir>/MNIST/raw/ (or FashionMNIST/raw/); torchvision downloads them when one is missing.
    """
    dataset = DATASETS[name]
    raw = os.path.join(data_dir, dataset.__name__, "raw")
    classes = class_names(name)
    for file in RAW_FILES:
        path = os.path.join(raw, file)
        if os.path.exists(path) and not os.path.isfile(path):
            sys.exit(f"error: {path} is not a file; remove it and run again to download the data")
    if not all(os.path.isfile(os.path.join(raw, file)) for file in RAW_FILES):
        try:
            dataset(data_dir, download=True)
        except (RuntimeError, OSError) as e:  # no network, or a mirror that is down
            reason = str(e).strip().splitlines()[-1]  # the last attempt's error
            sys.exit(f"error: {dataset.__name__} is not in {raw} and could not be downloaded ({reason}). "
                     f"Put the four raw files {', '.join(RAW_FILES)} there, or pass --data-dir "
                     f"with the folder that holds {dataset.__name__}/raw/")
    return read_split(raw, "train"), read_split(raw, "t10k"), classes


def label_help():
    """--label's help: the class indices and names of both datasets."""
    fashion = ", ".join(f"{i} {name}" for i, name in enumerate(class_names("fashion-mnist")))
    return f"the class to draw, by index: the digit itself for mnist; for fashion-mnist {fashion}"


def inputs_to_sample(n, label, conditional, z_dim, device):
    """--sample's (z, classes, the grid's row length): n draws of z; for a conditional model, all of the
    class `label`, or without --label the classes in turn, ten to a row, so that column k holds class k.
    Classes are None, and the row length too (a near-square grid), when the model is unconditional."""
    if not conditional:
        if label is not None:
            sys.exit("error: --label: this model was trained without --conditional, so it cannot be asked "
                     "for a class; train one with --conditional")
        return torch.randn(n, z_dim, device=device), None, None
    if label is not None:
        labels, nrow = torch.full((n,), label, device=device), None
    else:
        labels, nrow = torch.arange(n, device=device) % N_CLASSES, min(n, N_CLASSES)
    return torch.randn(n, z_dim, device=device), labels, nrow


def noise_for_pictures(z_dim, conditional, device):
    """The fixed noise (and classes) that every epoch's samples are drawn from, so that the pictures
    of successive epochs show the same draws: 64 of z, or for a conditional model 8 draws of z,
    each drawn as every class, a row of 8 per class (classes None when unconditional)."""
    if not conditional:
        return torch.randn(64, z_dim, device=device), None
    z = torch.randn(8, z_dim, device=device).repeat(N_CLASSES, 1)
    return z, torch.arange(N_CLASSES, device=device).repeat_interleave(8)


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
            yield self.batch(order[i:i + self.batch_size])

    def batch(self, idx):
        """The images at `idx` as floats of shape (B, 1, 28, 28) in [0, 1], and their labels."""
        return self.images[idx].unsqueeze(1).float().div_(255), self.labels[idx]

    def mean_over_images(self, per_batch):
        """The mean over all images of per-batch means (a row per batch), weighing the smaller last batch less."""
        n = len(self.images)
        sizes = torch.tensor([min(self.batch_size, n - i) for i in range(0, n, self.batch_size)])
        return (per_batch.cpu().double() * sizes.view(-1, *[1] * (per_batch.dim() - 1))).sum(0) / n


# ----------------------------------------------------------------------------- the run's folder and checkpoint
CHECKPOINT = {"vae.py": "vae.pt", "gan.py": "gan.pt"}  # what each script saves in --out-dir
CHECKPOINT_VERSION = 2  # 2: the VAE's batch losses kept per epoch, and the GAN's D(G(z)) in both steps


def start_run(script, args, fixed_options):
    """Check, before the data are read, that the run can start; the checkpoint to go on from with --resume, or None."""
    if args.label is not None:
        sys.exit("error: --label goes with --sample, to ask a conditional model for a class")
    for other, name in CHECKPOINT.items():
        if other != script and os.path.isfile(os.path.join(args.out_dir, name)):
            sys.exit(f"error: --out-dir {args.out_dir} holds the results of {other} ({name}); "
                     f"pass another --out-dir")
    if args.resume:
        return load_checkpoint(os.path.join(args.out_dir, CHECKPOINT[script]), script, args, fixed_options)
    return None


def prepare_out_dir(path, script=None, resume=False):
    """Create --out-dir, or exit with a one-line error if it cannot be written.

    A fresh run of `script` first deletes the script's earlier run in the folder, saying so, so that
    the folder never mixes the results of two runs.
    """
    try:
        os.makedirs(path, exist_ok=True)
        if script and not resume and os.path.isfile(os.path.join(path, CHECKPOINT[script])):
            earlier = [name for name in os.listdir(path)
                       if re.fullmatch(r"metrics\.csv|.*\.(png|gif)|\.tmp\..*", name)]
            pictures = sum(name.endswith((".png", ".gif")) for name in earlier)
            print(f"replacing the earlier run in {path}: deleting {CHECKPOINT[script]}, "
                  f"{'metrics.csv and ' if 'metrics.csv' in earlier else ''}{pictures} pictures", flush=True)
            for name in [CHECKPOINT[script]] + earlier:
                os.remove(os.path.join(path, name))
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
    checkpoint["config"].setdefault("conditional", False)  # written before --conditional existed
    return checkpoint


def load_checkpoint(path, script, args, fixed_options):
    """The checkpoint to go on from with --resume; a one-line error if it does not fit `args`.

    `fixed_options` name the options that cannot change: the networks' shapes, the data and the
    seed. The others may: a new --lr or --batch-size applies from the next epoch on.
    """
    checkpoint = read_checkpoint(path, script, "--resume")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        sys.exit(f"error: --resume: {path} was written by an older {script}, which kept other records; "
                 f"--sample still reads it, but to train, start afresh without --resume")
    config = checkpoint["config"]
    for option in fixed_options:
        trained, asked = config[option], getattr(args, option)
        if trained != asked:
            flag = "--" + option.replace("_", "-")
            if isinstance(asked, bool):
                trained, asked = (f"{'with' if value else 'without'} {flag}" for value in (trained, asked))
                sys.exit(f"error: --resume: the checkpoint was trained {trained}, so it cannot go on {asked}")
            sys.exit(f"error: --resume: the checkpoint was trained with {flag} {trained}, not {asked}; "
                     f"{flag} cannot change when resuming")
    if checkpoint["epoch"] >= args.epochs:
        sys.exit(f"error: --resume: the checkpoint has done {checkpoint['epoch']} epochs already; "
                 f"ask for more with --epochs")
    changed = [f"--{option.replace('_', '-')} {value} (was {config[option]})" for option, value in vars(args).items()
               if option in config and value != config[option] and option not in ("resume", "epochs")]
    print(f"going on from epoch {checkpoint['epoch']}{''.join(', with ' + c for c in changed)}", flush=True)
    return checkpoint


def load_optimizer(optimizer, state):
    """Load an optimizer's saved state (its running averages and step count) but keep the learning rate and
    betas it was built with, which are this run's options: --resume --lr 1e-4 does lower the rate."""
    settings = [{key: group[key] for key in ("lr", "betas")} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, setting in zip(optimizer.param_groups, settings):
        group.update(setting)


def what_is_kept(folder):
    """After a fault: which checkpoint `folder` holds. It is whole, since every file is written atomically."""
    for name in CHECKPOINT.values():
        try:
            epoch = torch.load(os.path.join(folder, name), map_location="cpu", weights_only=True)["epoch"]
            return f"the checkpoint of epoch {epoch} is kept whole in {os.path.join(folder, name)}"
        except Exception:  # absent, or not a checkpoint
            continue
    return "no checkpoint was kept"


# ----------------------------------------------------------------------------- around the training loop
def progress_bar(loader, epoch, epochs):
    """One epoch's batches, with a progress bar in a terminal only (disable=None): a log file gets none."""
    return tqdm(loader, desc=f"epoch {epoch}/{epochs}", leave=False, disable=None)


def stop_if_not_finite(per_batch, epoch):
    """Exit with a one-line error naming the first batch of `epoch` whose loss (a row each) is nan or infinite."""
    values = per_batch.view(len(per_batch), -1)
    bad = ~torch.isfinite(values)
    if bad.any():
        batch = bad.any(1).nonzero()[0, 0].item()
        sys.exit(f"error: the loss became {values[batch][bad[batch]][0].item()} at epoch {epoch}, "
                 f"batch {batch + 1}; training stopped and the checkpoint of epoch {epoch - 1} is kept. "
                 f"A smaller --lr may help")


def speed(start, images):
    """An epoch's time since `start` (time.perf_counter()), as metrics.csv records it."""
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images_per_second": images / seconds}


def end_epoch(checkpoint, path, line):
    """Save an epoch's checkpoint and metrics.csv (never ahead of the checkpoint), and only then print its line:
    an epoch printed is an epoch kept."""
    save_checkpoint(checkpoint, path)
    save_csv(checkpoint["metrics"], os.path.join(os.path.dirname(path), "metrics.csv"))
    try:
        print(line, flush=True)
    except BrokenPipeError:  # `python vae.py | head -1`: whoever read the output has gone
        output_closed(f"training stopped, and {what_is_kept(os.path.dirname(path))}")


def last_checkpoint(path, script):
    """The checkpoint of the last finished epoch, from which the final pictures are drawn (also after a Ctrl-C,
    when the model holds part of an unfinished epoch). metrics.csv is rewritten to match it."""
    checkpoint = read_checkpoint(path, script, "the final pictures")
    if checkpoint["metrics"]:
        save_csv(checkpoint["metrics"], os.path.join(os.path.dirname(path), "metrics.csv"))
    return checkpoint


def output_closed(what_happened):
    """Where stdout was a pipe whose reader has gone: end the run, saying so in one line on stderr."""
    with contextlib.suppress(OSError, ValueError):  # so that Python's last flush of stdout does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(f"error: the output was closed (a broken pipe); {what_happened}")


@contextlib.contextmanager
def ctrl_c_stops_training():
    """`with ctrl_c_stops_training() as stop:` a Ctrl-C ends the block and sets stop.pressed.

    The epoch under way is dropped; the last finished one's checkpoint is whole, since every file
    is written atomically, and the final pictures can still be drawn from it.
    """
    stop = SimpleNamespace(pressed=False)
    try:
        yield stop
    except KeyboardInterrupt:
        stop.pressed = True
        print("\nCtrl-C: training stopped; the finished epochs are kept", file=sys.stderr, flush=True)


def exit_interrupted(out_dir, epochs_done):
    """After a Ctrl-C: say what was kept and how to go on, and exit with the usual status 130."""
    if epochs_done:
        print(f"interrupted after {epochs_done} finished epochs: their checkpoint and pictures are in "
              f"{os.path.abspath(out_dir)}; to go on, run the same command with --resume")
    else:
        print("interrupted before the first epoch ended: nothing was trained; run the same command to start again")
    sys.exit(130)


def exit_cleanly(out_of_memory_hint):
    """Decorate main() so that faults end the run with a one-line message instead of a traceback.

    Running out of memory, when the networks are built or while they train, names the options to
    lower (`out_of_memory_hint`); a Ctrl-C outside the training loop (which handles its own, see
    ctrl_c_stops_training) exits with the usual status 130; a closed output stops the run.
    """
    def decorate(main):
        @functools.wraps(main)
        def guarded(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt:
                print("\ninterrupted", file=sys.stderr)
                sys.exit(130)
            except BrokenPipeError:
                output_closed("stopped; every file written is whole")
            except RuntimeError as e:  # torch.OutOfMemoryError on CUDA; a plain RuntimeError on the CPU and MPS
                if not (isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e)
                        or "can't allocate memory" in str(e)):
                    raise
                size = re.search(r"[Tt]ried to allocate ([\d.]+) ?(\w+)", str(e))
                if size and size[2] == "bytes":
                    size = f"{float(size[1]) / 2 ** 30:.1f} GiB"
                elif size:
                    size = f"{size[1]} {size[2]}"
                sys.exit(f"error: out of memory{f' (one tensor needed {size})' if size else ''}; "
                         f"lower {out_of_memory_hint}")
        return guarded
    return decorate


# ----------------------------------------------------------------------------- saving, never half-written
@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it to `path` only once writing succeeded.

    A write that fails (a full disk, say) ends the run with a one-line error that says what was kept.
    """
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".tmp.{name}")  # same folder, so the rename is atomic
    try:
        yield tmp
        os.replace(tmp, path)
    # On a full disk torch.save raises a RuntimeError ("unexpected pos 576 vs 534"), the others an OSError.
    except (OSError, RuntimeError) as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__} while saving"
        free = shutil.disk_usage(folder or ".").free / 2 ** 20
        sys.exit(f"error: {path} could not be written ({reason}; {free:.0f} MB free on its disk); "
                 f"{what_is_kept(folder)}")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_grid(images, path, nrow=None):
    """Save an image batch in [0, 1] as one PNG grid, `nrow` images to a row (by default, near square)."""
    with atomic_path(path) as tmp:
        save_image(images.detach().float().cpu(), tmp, nrow=nrow or math.ceil(math.sqrt(len(images))),
                   padding=2, pad_value=0.5)


def plot_image_table(columns, column_names, row_names, title):
    """Images in a table with named rows and columns; `columns` holds one image batch per column."""
    grid = make_grid(torch.stack(columns, 1).flatten(0, 1), nrow=len(columns), padding=2, pad_value=1)
    fig, ax = plt.subplots(figsize=(0.7 * len(columns) + 1.5, 0.7 * len(columns[0]) + 0.6))
    ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([30 * i + 15 for i in range(len(columns))], column_names, rotation=45, ha="right")
    ax.set_yticks([30 * i + 15 for i in range(len(row_names))], row_names)
    ax.tick_params(length=0)
    ax.set_title(title)
    return fig


@torch.no_grad()
def plot_class_grid(generate, z, classes):
    """A conditional model's class_grid.png: row c draws class c from each noise vector in z (one per column).

    The same z in every row: each column is one style (slant, thickness, width) drawn as every class.
    `generate(z, y)` is the model's decoder or generator.
    """
    y = torch.arange(len(classes), device=z.device)
    columns = [generate(z_j.expand(len(classes), -1), y).cpu() for z_j in z]
    return plot_image_table(columns, [f"z{j + 1}" for j in range(len(z))], classes,
                            "Each row one class, each column one z: the same style in every row")


def save_figure(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)


def save_checkpoint(checkpoint, path):
    """Save a plain dict as a checkpoint, with what --resume also needs: the random generators' state, the version."""
    with atomic_path(path) as tmp:
        torch.save({**checkpoint, "rng": rng_state(), "version": CHECKPOINT_VERSION}, tmp)


def save_csv(rows, path):
    """Save a list of dicts (one per row, same keys) as a CSV file with a header."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
