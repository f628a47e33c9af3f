"""Train the slides' generative adversarial network (GAN) on MNIST and draw what G learned.

    python gan.py                          # every digit, in about equal shares
    python gan.py --sample 64              # 64 new images from the G trained above
    python gan.py --conditional            # G and D are also given the class
    python gan.py --help                   # every option
    python gan.py --r1-gamma 0 --ema-decay 0 --betas 0.5 0.999    # the slides' exact setting: half are 1s

The file follows the slides, top to bottom: settings, data, networks (G and D, in models.py), loss,
training loop, visualisation; main(), at the end, runs them in that order. What a run also needs
(checkpoints, --resume, Ctrl-C, the progress bar, clear errors) lives in utils.py.
"""
import argparse
import copy
import os
import time

import utils  # first: it makes a missing or mismatched package a one-line error

import matplotlib.pyplot as plt
import torch
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid
from tqdm import tqdm

from models import D, G


# ----------------------------------------------------------------------------- settings
def below_one(text):
    """An argparse type: a number from 0 up to, but not including, 1 (a decay rate)."""
    value = utils.positive(float, zero_ok=True)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 up to (not including) 1, not {text}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train the slides' GAN on MNIST (or Fashion-MNIST); pictures, "
                                "metrics and the trained networks land in --out-dir.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--z-dim", type=utils.positive(int), default=10,
                   help="size of the noise z that G turns into an image")
    p.add_argument("--hidden-dim", type=utils.positive(int), default=500, help="units in each hidden layer of G")
    p.add_argument("--d-hidden-dim", type=utils.positive(int), default=500, help="units in each hidden layer of D")
    p.add_argument("--batch-size", type=utils.positive(int), default=200,
                   help="real (and as many fake) images per training step")
    p.add_argument("--epochs", type=utils.positive(int), default=30,
                   help="passes over the 60,000 training images (in all, when resuming)")
    p.add_argument("--lr", type=utils.positive(float), default=1e-3, help="Adam's learning rate, for G and D")
    p.add_argument("--betas", type=below_one, nargs=2, default=[0.0, 0.99], metavar=("BETA1", "BETA2"),
                   help="Adam's decay rates for its averages of each gradient and of its square, for G and D; "
                   "the slides' 0.5 0.999 keep half of each past step's momentum, which makes the two players "
                   "overshoot each other")
    p.add_argument("--r1-gamma", type=utils.positive(float, zero_ok=True), default=1.0, metavar="GAMMA",
                   help="weight of the R1 penalty on D's slope at real images, which keeps D from overpowering G "
                   "(without it, G collapses onto a few digits: half its samples are 1s); 0 turns it off, as on the "
                   "slides")
    p.add_argument("--ema-decay", type=below_one, default=0.999, metavar="DECAY",
                   help="the pictures, --sample and the checkpoint's 'g' use a moving average of G's weights that "
                   "moves 1 - DECAY of the way to G after each step; 0 turns averaging off (the slides)")
    p.add_argument("--seed", type=utils.seed, default=0,
                   help="random seed; the same seed repeats a run exactly on the same CPU")
    p.add_argument("--dataset", default="mnist", choices=list(utils.DATASETS),
                   help="mnist: handwritten digits; fashion-mnist: Zalando's photos of clothes, "
                   "also 28x28 pixels in 10 classes")
    p.add_argument("--data-dir", default="data",
                   help="folder holding MNIST/raw/ or FashionMNIST/raw/ (downloaded there when missing)")
    p.add_argument("--out-dir", default="outputs/gan", help="where pictures, metrics.csv and gan.pt go")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where to train; auto takes CUDA, then Apple's MPS, then the CPU")
    p.add_argument("--resume", action="store_true",
                   help="go on from the checkpoint in --out-dir, up to --epochs epochs in all")
    p.add_argument("--sample", type=utils.positive(int), metavar="N",
                   help="do not train: turn N draws of z into images with the G trained in --out-dir (its settings "
                   "come from the checkpoint), save them as generated.png, and exit; a conditional G draws the "
                   "classes in turn, ten to a row, or only the class --label")
    p.add_argument("--conditional", action="store_true",
                   help="train the conditional GAN (Mirza & Osindero, 2014): G and D are also given the class, so "
                   "that z holds only the style, and a class can be asked for with --sample and --label")
    p.add_argument("--label", type=int, choices=range(utils.N_CLASSES), metavar="K",
                   help=f"with --sample, of a conditional model: {utils.label_help()}")
    return utils.one_line_errors(p).parse_args(argv)


# ----------------------------------------------------------------------------- data
def load_data(args, device):
    """The training images (the GAN needs no test split), held whole on the device in batches, and the class names."""
    (images, labels), _, classes = utils.load_dataset(args.dataset, args.data_dir)
    return utils.BatchLoader(images, labels, args.batch_size, device), classes


# ----------------------------------------------------------------------------- networks
# The slides' G and D are in models.py.


# ----------------------------------------------------------------------------- loss
def criterion(pred_y, y):
    """The slides' nn.BCELoss(): -[y log D + (1 - y) log(1 - D)], averaged over the batch.

    Written out so that a diverged D (a nan) is reported by the training loop, not a crash.
    """
    return -utils.log_bernoulli(y, pred_y).mean()


def make_real_y(n, device):
    return torch.ones(n, device=device)


def make_fake_y(n, device):
    return torch.zeros(n, device=device)


R1_EVERY = 4  # the R1 penalty is computed every 4th D step ("lazy regularisation", Karras et al., 2020)


def r1_penalty(d, real_x, labels=None):
    """(Beyond the slides) R1 (Mescheder et al., 2018): the mean squared length of the gradient of D's
    logit at real images.

    Penalising it keeps D's judgement smooth around the real digits, so that D cannot become so
    sharp that G's gradient stops pointing anywhere useful (the slides' collapse onto a few digits).
    """
    real_x = real_x.detach().requires_grad_(True)
    # create_graph: the penalty is itself trained on, so its gradient needs a graph of its own
    grad, = torch.autograd.grad(d.logit(real_x, labels).sum(), real_x, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


# ----------------------------------------------------------------------------- training loop
# What each batch records: D's losses, D(x) and D(G(z)) in D's step; G's loss and D(G(z)) in G's step.
COLUMNS = ["d_loss_real", "d_loss_fake", "d_real", "d_fake", "g_loss", "d_fake_in_g_step"]


def train(g, d, g_ema, g_optimizer, d_optimizer, loader, args):
    """The slides' training loop, for one epoch. Returns a row per batch of the COLUMNS above."""
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
def plot_progress(grids, epochs):
    """The slide's figure: the fixed-noise samples after a few epochs, side by side."""
    fig, axes = plt.subplots(1, len(epochs), figsize=(4 * len(epochs), 4.3), squeeze=False)
    for ax, epoch in zip(axes[0], epochs):
        ax.imshow(make_grid(grids[epoch], nrow=8, padding=2, pad_value=0.5).permute(1, 2, 0).numpy())
        ax.set_title(f"after epoch {epoch}" if epoch else "before training")
        ax.axis("off")
    return fig


def save_progress_gif(grids, path):
    """An animation of the fixed-noise samples: one frame per epoch, the epoch written above each."""
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
    with utils.atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)


def plot_loss(metrics):
    epochs = [m["epoch"] for m in metrics]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(epochs, [m["d_loss_real"] for m in metrics], "o-", label="D's loss on real images")
    left.plot(epochs, [m["d_loss_fake"] for m in metrics], "o-", label="D's loss on fake images")
    left.plot(epochs, [m["g_loss"] for m in metrics], "o-", label="G's loss (after D's step)")
    left.set(xlabel="epoch", ylabel="binary cross-entropy", title="Losses (mean over the epoch)")
    right.plot(epochs, [m["d_real"] for m in metrics], "o-", label="D(x): real images")
    right.plot(epochs, [m["d_fake"] for m in metrics], "o-", label="D(G(z)): fake images, in D's step")
    right.plot(epochs, [m["d_fake_in_g_step"] for m in metrics], "o--", label="D(G(z)) in G's step, after D's")
    right.axhline(0.5, color="gray", ls="--", lw=1, label="0.5: D cannot tell")
    right.set(xlabel="epoch", ylabel="D's probability of 'real'", ylim=(0, 1),
              title="What D says (mean over the epoch)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def draw_final_pictures(g_ema, checkpoint, fixed_z, classes, out_dir):
    """The pictures of the whole run, from the averaged G and the records of its last checkpoint."""
    grids, done = checkpoint["grids"], checkpoint["epoch"]
    # As the slides' figure: before training, after the first epoch, half-way, and at the end.
    shown = sorted({0, 1, (done + 1) // 2, done})
    utils.save_figure(plot_progress(grids, shown), os.path.join(out_dir, "progress.png"))
    save_progress_gif(grids, os.path.join(out_dir, "progress.gif"))
    utils.save_figure(plot_loss(checkpoint["metrics"]), os.path.join(out_dir, "loss.png"))
    if checkpoint["config"]["conditional"]:
        utils.save_figure(utils.plot_class_grid(g_ema, fixed_z[:8], classes), os.path.join(out_dir, "class_grid.png"))


@torch.no_grad()
def sample(checkpoint_path, n, label, device):
    """--sample: rebuild the trained (averaged) G from its checkpoint and turn n draws of z into images."""
    checkpoint = utils.read_checkpoint(checkpoint_path, "gan.py", "--sample")
    config = checkpoint["config"]
    g = G(config["z_dim"], utils.X_SHAPE, config["hidden_dim"], utils.N_CLASSES * config["conditional"]).to(device)
    g.load_state_dict(checkpoint["g"])
    z, labels, nrow = utils.inputs_to_sample(n, label, config["conditional"], g.z_dim, device)
    path = os.path.join(os.path.dirname(checkpoint_path), "generated.png")
    utils.prepare_out_dir(os.path.dirname(path))
    utils.save_grid(g(z, labels), path, nrow)
    print(f"{n} images from the {config['dataset']} G after epoch {checkpoint['epoch']}: {os.path.abspath(path)}")


# ----------------------------------------------------------------------------- main: the slides in order
def checkpoint_of(g, g_ema, d, g_optimizer, d_optimizer, args, epoch, records):
    """The checkpoint, a plain dict: the networks ('g' the averaged G), the optimizers, the settings, the epochs
    done and their records."""
    return {"script": "gan.py", "g": g_ema.state_dict(), "g_raw": g.state_dict(), "d": d.state_dict(),
            "g_optimizer": g_optimizer.state_dict(), "d_optimizer": d_optimizer.state_dict(), "config": vars(args),
            "epoch": epoch, **records}


@utils.exit_cleanly("--batch-size, --hidden-dim or --d-hidden-dim (with --sample: N)")
def main(argv=None):
    args = parse_args(argv)
    device = utils.get_device(args.device)
    utils.seed_everything(args.seed)
    checkpoint_path = os.path.join(args.out_dir, "gan.pt")
    if args.sample:
        return sample(checkpoint_path, args.sample, args.label, device)
    checkpoint = utils.start_run("gan.py", args, ["dataset", "z_dim", "hidden_dim", "d_hidden_dim", "conditional",
                                                  "seed"])

    loader, classes = load_data(args, device)

    # --conditional: G and D also get the class, as a one-hot vector (see models.py).
    n_classes = utils.N_CLASSES * args.conditional
    g = G(args.z_dim, utils.X_SHAPE, args.hidden_dim, n_classes).to(device)
    # (beyond the slides) The pictures show g_ema, an exponential moving average of G's weights
    # (Yazıcı et al., 2019): the adversarial game keeps G's weights oscillating, and their
    # average draws cleaner digits than G does at any one step. It is never trained: no gradient.
    g_ema = copy.deepcopy(g).requires_grad_(False)
    d = D(utils.X_SHAPE, args.d_hidden_dim, n_classes).to(device)
    # (beyond the slides) Adam without momentum (betas 0 and 0.99, not the slides' 0.5 and 0.999), as
    # with R1 in Mescheder et al. (2018) and Karras et al. (2020): momentum carries each player on in
    # the direction that beat the other's past self, and the game circles instead of settling.
    g_optimizer = torch.optim.Adam(g.parameters(), lr=args.lr, betas=args.betas, fused=True)
    d_optimizer = torch.optim.Adam(d.parameters(), lr=args.lr, betas=args.betas, fused=True)
    # Adam's running averages of tiny gradients become subnormal floats, which a CPU handles up to a
    # hundred times slower; rounding them to zero costs nothing in accuracy.
    torch.set_flush_denormal(True)
    fixed_z, fixed_labels = utils.noise_for_pictures(args.z_dim, args.conditional, device)  # the same in every picture

    # What the final pictures need of each epoch; grids[epoch]: the samples after that epoch, 0 before training.
    records = {"metrics": [], "grids": []}
    if checkpoint:  # --resume
        for net, key in [(g, "g_raw"), (g_ema, "g"), (d, "d")]:
            net.load_state_dict(checkpoint[key])
        utils.load_optimizer(g_optimizer, checkpoint["g_optimizer"])
        utils.load_optimizer(d_optimizer, checkpoint["d_optimizer"])
        records = {key: checkpoint[key] for key in records}
        utils.set_rng_state(checkpoint["rng"])  # the same batches and noise as an uninterrupted run
    utils.prepare_out_dir(args.out_dir, "gan.py", args.resume)  # only now: bad input above leaves nothing behind
    if not checkpoint:
        records["grids"].append(g_ema(fixed_z, fixed_labels).cpu())
        utils.save_checkpoint(checkpoint_of(g, g_ema, d, g_optimizer, d_optimizer, args, 0, records), checkpoint_path)
        utils.save_grid(records["grids"][0], os.path.join(args.out_dir, "samples_00.png"), nrow=8)

    # Each epoch: the slide's loop, then the epoch's pictures, its checkpoint, its line. Ctrl-C stops at once.
    with utils.ctrl_c_stops_training() as stop:
        for epoch in range(len(records["metrics"]) + 1, args.epochs + 1):
            start = time.perf_counter()
            rows = train(g, d, g_ema, g_optimizer, d_optimizer, utils.progress_bar(loader, epoch, args.epochs), args)
            utils.stop_if_not_finite(rows, epoch)
            records["grids"].append(g_ema(fixed_z, fixed_labels).cpu())
            utils.save_grid(records["grids"][-1], os.path.join(args.out_dir, f"samples_{epoch:02d}.png"), nrow=8)
            records["metrics"].append({"epoch": epoch, **dict(zip(COLUMNS, loader.mean_over_images(rows).tolist())),
                                       **utils.speed(start, len(loader.images))})
            utils.end_epoch(checkpoint_of(g, g_ema, d, g_optimizer, d_optimizer, args, epoch, records), checkpoint_path,
                            epoch_line(records["metrics"][-1], args.epochs))

    checkpoint = utils.last_checkpoint(checkpoint_path, "gan.py")  # the last finished epoch, even after Ctrl-C
    g_ema.load_state_dict(checkpoint["g"])
    if checkpoint["epoch"]:
        draw_final_pictures(g_ema, checkpoint, fixed_z, classes, args.out_dir)
    if stop.pressed:
        utils.exit_interrupted(args.out_dir, checkpoint["epoch"])
    print(f"results in {os.path.abspath(args.out_dir)}")


if __name__ == "__main__":
    main()
