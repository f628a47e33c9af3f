"""Train the slides' generative adversarial network (GAN) on MNIST and draw what G learned.

    python gan.py                          # every digit, in about equal shares
    python gan.py --sample 64              # 64 new images from the G trained above
    python gan.py --r1-gamma 0 --ema-decay 0 --betas 0.5 0.999    # the slides' exact setting: half are 1s

Top to bottom as on the slides: settings, data, networks (in models.py), training loop (with its loss),
visualisation; main() runs them in that order.
"""
import argparse
import copy
import os
import sys
import time

import torch
from matplotlib import font_manager
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

import utils
from models import D, G

R1_EVERY = 4  # the R1 penalty is computed every 4th D step ("lazy regularisation", Karras et al., 2020)


# ----------------------------------------------------------------------------- settings
def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train the slides' GAN on MNIST or Fashion-MNIST; pictures, metrics and "
                                "the networks land in --out-dir.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    positive, decay = utils.number(int, at_least=1), utils.number(float, at_least=0, below=1)
    p.add_argument("--z-dim", type=positive, default=10, help="size of the noise z that G turns into an image")
    p.add_argument("--hidden-dim", type=positive, default=500, help="units in each hidden layer of G")
    p.add_argument("--d-hidden-dim", type=positive, default=500, help="units in each hidden layer of D")
    p.add_argument("--batch-size", type=positive, default=200, help="real (and as many fake) images per step")
    p.add_argument("--epochs", type=positive, default=30, help="passes over the training images, in all when resuming")
    p.add_argument("--lr", type=utils.number(float, above=0), default=1e-3, help="Adam's learning rate, for G and D")
    p.add_argument("--betas", type=decay, nargs=2, default=[0.0, 0.99], metavar=("BETA1", "BETA2"), help="Adam's "
                   "decay rates for its averages of the gradient and of its square; the slides' 0.5 0.999 keep half "
                   "of each past step's momentum, which makes the two players overshoot each other")
    p.add_argument("--r1-gamma", type=utils.number(float, at_least=0), default=1.0, metavar="GAMMA", help="R1's "
                   "gamma: D's loss gains GAMMA/2 times the mean squared gradient of D's logit at real images (added "
                   f"every {R1_EVERY}th step, {R1_EVERY} times as large); 0 turns it off, as on the slides, and G "
                   "collapses onto a few digits: 37%% of its samples are 1s (half with the slides' betas too)")
    p.add_argument("--ema-decay", type=decay, default=0.999, metavar="DECAY", help="the pictures and --sample use "
                   "g_ema, an average of G's weights that moves 1 - DECAY of the way to G each step; 0: G itself")
    p.add_argument("--conditional", action="store_true", help="train the conditional GAN (Mirza & Osindero, 2014): "
                   "G and D also get the class, so that z holds only the style")
    p.add_argument("--sample", type=positive, metavar="N", help="do not train: turn N draws of z into images with the "
                   "G in --out-dir, into generated.png; a conditional G draws the classes in turn")
    p.add_argument("--label", type=int, choices=range(10), metavar="K", help=f"with --sample, the one class that a "
                   f"conditional G draws: for mnist the digit, for fashion-mnist {utils.FASHION}")
    p.add_argument("--resume", action="store_true", help="go on from the checkpoint in --out-dir, up to --epochs; "
                   "of a finished run, draw its final pictures again")
    p.add_argument("--seed", type=utils.number(int, at_least=0, below=2 ** 64), default=0,
                   help="random seed; the same seed repeats a run exactly on the same machine and number of threads")
    p.add_argument("--dataset", default="mnist", choices=list(utils.DATASETS),
                   help="mnist: handwritten digits; fashion-mnist: Zalando's photos of clothes in 10 classes")
    p.add_argument("--data-dir", default="data", help="folder of MNIST/raw/ or FashionMNIST/raw/; downloaded if missing")
    p.add_argument("--out-dir", default="outputs/gan", help="where the pictures, metrics.csv and gan.pt go")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where to train; auto takes CUDA, then Apple's MPS, then the CPU")
    args = p.parse_args(argv)
    if args.label is not None and args.sample is None:
        p.error("argument --label: goes with --sample, to ask a conditional model for a class")
    return args


# ----------------------------------------------------------------------------- data, networks
# The training images come from utils.load_dataset (G needs no test images); the slides' G and D are in models.py.
def fixed_noise(args, device):
    """The noise of every epoch's samples, the same each time: 64 draws, or for a conditional G 8 draws, each as
    every class, a row per class."""
    if not args.conditional:
        return torch.randn(64, args.z_dim, device=device), None
    return torch.randn(8, args.z_dim, device=device).repeat(10, 1), torch.arange(10, device=device).repeat_interleave(8)


# ----------------------------------------------------------------------------- training loop
def criterion(pred_y, y):
    """The slides' nn.BCELoss(): -[y log D + (1 - y) log(1 - D)], averaged; a diverged D's nan stops the run, where
    BCELoss would crash."""
    return -utils.log_bernoulli(y, pred_y).mean()


def make_real_y(n, device):
    return torch.ones(n, device=device)


def make_fake_y(n, device):
    return torch.zeros(n, device=device)


def r1_penalty(d, real_x, labels=None):
    """(Beyond the slides) R1 (Mescheder et al., 2018): the mean squared gradient of D's logit at real images.
    Penalising it keeps D's judgement smooth around the real digits, so that D cannot become so sharp that G's
    gradient stops pointing anywhere useful (the slides' collapse onto a few digits)."""
    real_x = real_x.detach().requires_grad_(True)
    # create_graph: the penalty is itself trained on, so its gradient needs a graph of its own
    grad, = torch.autograd.grad(d.logit(real_x, labels).sum(), real_x, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


# What each batch records: D's losses, D(x) and D(G(z)) in D's step; G's loss and D(G(z)) in G's step.
COLUMNS = ["d_loss_real", "d_loss_fake", "d_real", "d_fake", "g_loss", "d_fake_in_g_step"]


def train(g, d, g_ema, g_optimizer, d_optimizer, loader, args):
    """The slides' training loop, for one epoch. Returns a row per batch of the COLUMNS above."""
    g.train()
    d.train()
    rows = []
    for i, (real_x, labels) in enumerate(loader):  # labels: the classes, used only with --conditional
        # (the slides' real_x = real_x.to(device) is not needed: the loader's batches are already on the device)

        # (1) D's step: maximise log D(x) + log(1 - D(G(z)))
        d.zero_grad()

        # discriminator for real data
        real_pred_y = d(real_x, labels)
        real_y = make_real_y(len(real_x), real_x.device)
        real_d_loss = criterion(real_pred_y, real_y)
        real_d_loss.backward()
        if args.r1_gamma and i % R1_EVERY == 0:  # (beyond the slides) R1, R1_EVERY times as strong: see r1_penalty
            (R1_EVERY * args.r1_gamma / 2 * r1_penalty(d, real_x, labels)).backward()

        # discriminator for fake data; detach, so that this step leaves G alone
        z = torch.randn(len(real_x), args.z_dim, device=real_x.device)
        fake_x = g(z, labels)  # --conditional: fakes of the real batch's classes, in the data's proportions
        fake_pred_y = d(fake_x.detach(), labels)
        fake_y = make_fake_y(len(real_x), real_x.device)
        fake_d_loss = criterion(fake_pred_y, fake_y)
        fake_d_loss.backward()

        d_optimizer.step()
        d_step = [real_d_loss, fake_d_loss, real_pred_y.mean(), fake_pred_y.mean()]  # (for the log)

        # (2) G's step: maximise log D(G(z)), the "non-saturating" loss: its target is "real". The
        # minimax game's log(1 - D(G(z))) has a vanishing gradient early on, when D easily spots
        # fakes (Goodfellow et al., 2014, section 3).
        g.zero_grad()
        d.requires_grad_(False)  # (beyond the slides) the gradient flows through D to G; D's own would be wasted
        fake_pred_y = d(fake_x, labels)
        g_loss = criterion(fake_pred_y, real_y)
        g_loss.backward()
        d.requires_grad_(True)
        g_optimizer.step()
        update_average(g_ema, g, args.ema_decay)  # (beyond the slides) the averaged G that the pictures show

        rows.append(torch.stack(d_step + [g_loss, fake_pred_y.mean()]).detach())
    return torch.stack(rows)


@torch.no_grad()
def update_average(g_ema, g, decay):
    """Move each weight of g_ema 1 - decay of the way towards G's (decay 0: g_ema becomes G)."""
    for p_ema, p in zip(g_ema.parameters(), g.parameters()):
        p_ema.lerp_(p, 1 - decay)


def epoch_line(row, epochs):
    """What each epoch prints: its row of metrics.csv in one line."""
    return (f"epoch {row['epoch']:2d}/{epochs}  D loss real {row['d_loss_real']:.3f} fake {row['d_loss_fake']:.3f}  "
            f"G loss {row['g_loss']:.3f}  D(x) {row['d_real']:.2f}  D(G(z)) {row['d_fake']:.2f}, after D's step "
            f"{row['d_fake_in_g_step']:.2f}  {row['seconds']:5.1f} s  {row['images_per_second']:6.0f} images/s")


# ----------------------------------------------------------------------------- visualisation
def save_samples(images, epoch, out_dir):
    """samples_XX.png: the fixed noise's samples after epoch XX (00: before training)."""
    with utils.atomic(os.path.join(out_dir, f"samples_{epoch:02d}.png")) as tmp:
        save_image(images, tmp, nrow=8, padding=2, pad_value=0.5)


def plot_progress(grids, epochs):
    """The slide's figure: the fixed noise's samples after a few epochs, side by side."""
    fig = Figure(figsize=(4 * len(epochs), 4.3))
    for ax, epoch in zip(fig.subplots(1, len(epochs), squeeze=False)[0], epochs):
        ax.imshow(make_grid(grids[epoch], nrow=8, padding=2, pad_value=0.5).permute(1, 2, 0).numpy())
        ax.set_title(f"after epoch {epoch}" if epoch else "before training")
        ax.axis("off")
    return fig


def save_progress_gif(grids, path):
    """An animation of the fixed noise's samples: one frame per epoch, the epoch written above each."""
    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), 15)  # a font that matplotlib brings
    frames = []
    for epoch, images in enumerate(grids):
        grid = make_grid(images, nrow=8, padding=2, pad_value=0.5)[0]  # grey: one of the three equal channels
        grid = Image.fromarray(grid.mul(255).add(0.5).clamp(0, 255).byte().numpy())  # rounded as in save_image
        frame = Image.new("L", (grid.width, grid.height + 24), 255)
        frame.paste(grid, (0, 24))
        ImageDraw.Draw(frame).text((6, 3), f"after epoch {epoch}" if epoch else "before training", fill=0, font=font)
        frames.append(frame)
    durations = [250] * (len(frames) - 1) + [2000]  # milliseconds; the last frame stays a while
    with utils.atomic(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)


def plot_loss(metrics):
    """loss.png: each epoch's mean losses, and what D says of real and fake images."""
    epochs = [m["epoch"] for m in metrics]
    fig = Figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)
    for key, label in [("d_loss_real", "D's loss on real images"), ("d_loss_fake", "D's loss on fake images"),
                       ("g_loss", "G's loss (after D's step)")]:
        left.plot(epochs, [m[key] for m in metrics], "o-", label=label)
    for key, style, label in [("d_real", "o-", "D(x): real images"), ("d_fake", "o-", "D(G(z)): fake images, in D's step"),
                              ("d_fake_in_g_step", "o--", "D(G(z)) in G's step, after D's")]:
        right.plot(epochs, [m[key] for m in metrics], style, label=label)
    right.axhline(0.5, color="gray", ls="--", lw=1, label="0.5: D cannot tell")
    left.set(xlabel="epoch", ylabel="binary cross-entropy", title="Losses (mean over the epoch)")
    right.set(xlabel="epoch", ylabel="D's probability of 'real'", ylim=(0, 1), title="What D says (mean over the epoch)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def draw_final_pictures(records, classes, args):
    """The pictures of the whole run, from the records of every epoch."""
    grids, done = records["grids"], len(records["metrics"])
    # As the slides' figure: before training, after the first epoch, half-way, and at the end.
    figures = {"progress.png": plot_progress(grids, sorted({0, 1, (done + 1) // 2, done})),
               "loss.png": plot_loss(records["metrics"])}
    if args.conditional:
        figures["class_grid.png"] = utils.plot_image_table(grids[-1], [f"z{j + 1}" for j in range(8)], classes,
                                                       "Each row one class, each column one z: the same style in every row")
    for name, figure in figures.items():
        with utils.atomic(os.path.join(args.out_dir, name)) as tmp:
            figure.savefig(tmp, dpi=120, bbox_inches="tight")
    save_progress_gif(grids, os.path.join(args.out_dir, "progress.gif"))


@torch.no_grad()
def sample(args, device):
    """--sample: turn N draws of z into images with the averaged G trained in --out-dir, into generated.png."""
    checkpoint, z, labels, nrow = utils.sample_inputs(os.path.join(args.out_dir, "gan.pt"), args, device)
    config = checkpoint["config"]
    g_ema = G(config["z_dim"], utils.X_SHAPE, config["hidden_dim"], 10 if config["conditional"] else 0).to(device)
    g_ema.load_state_dict(checkpoint["g_ema"])
    path = os.path.join(args.out_dir, "generated.png")
    with utils.atomic(path) as tmp:
        save_image(g_ema(z, labels), tmp, nrow=nrow, padding=2, pad_value=0.5)
    print(f"{args.sample} images of G after epoch {checkpoint['epoch']}: {os.path.abspath(path)}")


# ----------------------------------------------------------------------------- main: the slides in order
def main(argv=None):
    args = parse_args(argv)
    device = utils.get_device(args.device)
    torch.manual_seed(args.seed)
    if args.sample:
        return sample(args, device)
    (images, labels), _, classes = utils.load_dataset(args.dataset, args.data_dir)
    loader = utils.BatchLoader(images, labels, args.batch_size, device)

    # --conditional: G and D also get the class, as a one-hot vector (see models.py).
    g = G(args.z_dim, utils.X_SHAPE, args.hidden_dim, n_classes=10 if args.conditional else 0).to(device)
    # (beyond the slides) The pictures show g_ema, an exponential moving average of G's weights
    # (Yazıcı et al., 2019): the adversarial game keeps G's weights oscillating, and their
    # average draws cleaner digits than G does at any one step. It is never trained: no gradient.
    g_ema = copy.deepcopy(g).requires_grad_(False)
    d = D(utils.X_SHAPE, args.d_hidden_dim, n_classes=10 if args.conditional else 0).to(device)
    # (beyond the slides) Adam without momentum (betas 0 and 0.99, not the slides' 0.5 and 0.999), as
    # with R1 in Mescheder et al. (2018) and Karras et al. (2020): momentum carries each player on in
    # the direction that beat the other's past self, and the game circles instead of settling.
    g_optimizer = torch.optim.Adam(g.parameters(), lr=args.lr, betas=args.betas, fused=True)
    d_optimizer = torch.optim.Adam(d.parameters(), lr=args.lr, betas=args.betas, fused=True)
    # Adam's running averages of tiny gradients become subnormal floats, which a CPU handles up to a
    # hundred times slower; rounding them to zero costs nothing in accuracy.
    torch.set_flush_denormal(True)
    fixed_z, fixed_labels = fixed_noise(args, device)

    path = os.path.join(args.out_dir, "gan.pt")
    nets = {"g": g, "g_ema": g_ema, "d": d, "g_optimizer": g_optimizer, "d_optimizer": d_optimizer}
    records = {"metrics": [], "grids": []}  # grids[epoch]: the fixed noise's samples after that epoch, 0 before
    if args.resume:  # the networks, the data and the seed cannot change
        records = utils.resume(path, nets, args, ["z_dim", "hidden_dim", "d_hidden_dim", "conditional", "dataset",
                                                  "seed"], device)
    else:  # the checkpoint of epoch 0 first: from then on, the folder holds this run
        utils.start_fresh(args.out_dir, "gan.pt")
        records["grids"].append(g_ema(fixed_z, fixed_labels).cpu())
        utils.save_checkpoint(path, nets, records, args, device)
        save_samples(records["grids"][0], 0, args.out_dir)

    for epoch in range(len(records["metrics"]) + 1, args.epochs + 1):
        start = time.perf_counter()
        batches = tqdm(loader, f"epoch {epoch}/{args.epochs}", leave=False, disable=None)
        rows = train(g, d, g_ema, g_optimizer, d_optimizer, batches, args)
        records["grids"].append(g_ema(fixed_z, fixed_labels).cpu())
        save_samples(records["grids"][-1], epoch, args.out_dir)
        seconds = time.perf_counter() - start
        records["metrics"].append({"epoch": epoch, **dict(zip(COLUMNS, rows.mean(0).tolist())),
                                   "seconds": seconds, "images_per_second": len(loader.images) / seconds})
        utils.save_checkpoint(path, nets, records, args, device)
        print(epoch_line(records["metrics"][-1], args.epochs), flush=True)

    draw_final_pictures(records, classes, args)
    print(f"pictures, metrics.csv and gan.pt in {os.path.abspath(args.out_dir)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: every file on disk is whole, the last finished epoch's checkpoint among them
        print("\nCtrl-C: stopped; the finished epochs are kept: the same command with --resume goes on", file=sys.stderr)
        sys.exit(130)
