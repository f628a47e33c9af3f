"""Train the slides' generative adversarial network (GAN) on MNIST and draw what G learned.

    python gan.py                          # every digit, in about equal shares
    python gan.py --sample 64              # 64 new images from the G trained above
    python gan.py --conditional            # G and D are also given the class
    python gan.py --help                   # every option
    python gan.py --r1-gamma 0 --ema-decay 0 --betas 0.5 0.999    # the slides' exact setting: mostly 1s

The script follows the slides: settings, data, networks, training loop, visualisation.
"""
import argparse
import copy
import os
import sys
import time

import matplotlib.pyplot as plt
import torch
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid
from tqdm import tqdm

import utils
from models import D, G


# ----------------------------------------------------------------------------- settings
R1_EVERY = 4  # the R1 penalty is computed every 4th D step ("lazy regularisation", Karras et al., 2020)


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
                   "(without it, G collapses onto a few digits, mostly 1s); 0 turns it off, as on the slides")
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
                   "come from the checkpoint), save them as generated.png, and exit; a conditional G draws N of "
                   "each class, a row each, or N of the class --label")
    p.add_argument("--conditional", action="store_true",
                   help="train the conditional GAN (Mirza & Osindero, 2014): G and D are also given the class, so "
                   "that z holds only the style, and a class can be asked for with --sample and --label")
    p.add_argument("--label", type=int, choices=range(utils.N_CLASSES), metavar="K",
                   help=f"with --sample, of a conditional G: {utils.label_help()}")
    return utils.one_line_errors(p).parse_args(argv)


def criterion(pred_y, y):
    """The slides' nn.BCELoss(): -[y log D + (1 - y) log(1 - D)], averaged over the batch.

    Written out so that a diverged D (a nan) is reported by the training loop, not a crash.
    """
    return -utils.log_bernoulli(y, pred_y).mean()


def r1_penalty(d, real_x, labels=None):
    """R1 (Mescheder et al., 2018): the mean squared length of the gradient of D's logit at real images.

    Penalising it keeps D's judgement smooth around the real digits, so that D cannot become so
    sharp that G's gradient stops pointing anywhere useful (the slides' collapse onto a few digits).
    """
    real_x = real_x.detach().requires_grad_(True)
    # create_graph: the penalty is itself trained on, so its gradient needs a graph of its own
    grad, = torch.autograd.grad(d.logit(real_x, labels).sum(), real_x, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


@torch.no_grad()
def update_average(g_ema, g, decay):
    """Move each weight of g_ema 1 - decay of the way towards G's (decay 0: g_ema becomes G)."""
    for p_ema, p in zip(g_ema.parameters(), g.parameters()):
        p_ema.lerp_(p, 1 - decay)


def make_real_y(n, device):
    return torch.ones(n, device=device)


def make_fake_y(n, device):
    return torch.zeros(n, device=device)


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
    left.plot(epochs, [m["d_loss_real"] for m in metrics], "o-", label="D loss on real images")
    left.plot(epochs, [m["d_loss_fake"] for m in metrics], "o-", label="D loss on fake images")
    left.plot(epochs, [m["g_loss"] for m in metrics], "o-", label="G loss")
    left.set(xlabel="epoch", ylabel="binary cross-entropy", title="Losses (mean over the epoch)")
    right.plot(epochs, [m["d_real"] for m in metrics], "o-", label="D(x): real images")
    right.plot(epochs, [m["d_fake"] for m in metrics], "o-", label="D(G(z)): fake images")
    right.axhline(0.5, color="gray", ls="--", lw=1, label="0.5: D cannot tell")
    right.set(xlabel="epoch", ylabel="D's probability of 'real'", ylim=(0, 1),
              title="What D says (mean over the epoch)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


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


@utils.exit_cleanly("--batch-size, --hidden-dim or --d-hidden-dim (with --sample: N)")
def main(argv=None):
    args = parse_args(argv)
    device = utils.get_device(args.device)
    utils.seed_everything(args.seed)
    checkpoint_path = os.path.join(args.out_dir, "gan.pt")
    if args.sample:
        return sample(checkpoint_path, args.sample, args.label, device)
    if args.label is not None:
        sys.exit("error: --label goes with --sample, to ask a conditional G for a class")
    checkpoint = (utils.load_checkpoint(checkpoint_path, "gan.py", args,
                                        ["dataset", "z_dim", "hidden_dim", "d_hidden_dim", "conditional"])
                  if args.resume else None)

    # ------------------------------------------------------------------------- data
    (images, labels), _, classes = utils.load_dataset(args.dataset, args.data_dir)  # the training split is enough
    utils.prepare_out_dir(args.out_dir)  # only now: bad input above leaves nothing behind
    loader = utils.BatchLoader(images, labels, args.batch_size, device)

    # ------------------------------------------------------------------------- networks
    # --conditional: G and D also get the class, as a one-hot vector (see models.py).
    n_classes = utils.N_CLASSES * args.conditional
    g = G(args.z_dim, utils.X_SHAPE, args.hidden_dim, n_classes).to(device)
    # (beyond the slides) The pictures show g_ema, an exponential moving average of G's weights
    # (Yazıcı et al., 2019): the adversarial game keeps G's weights oscillating, and their
    # average draws cleaner digits than G does at any one step.
    g_ema = copy.deepcopy(g).requires_grad_(False)
    d = D(utils.X_SHAPE, args.d_hidden_dim, n_classes).to(device)
    # (beyond the slides) Adam without momentum (betas 0 and 0.99, not the slides' 0.5 and 0.999), as
    # with R1 in Mescheder et al. (2018) and Karras et al. (2020): momentum carries each player on in
    # the direction that beat the other's past self, and the game circles instead of settling.
    g_optimizer = torch.optim.Adam(g.parameters(), lr=args.lr, betas=args.betas, fused=True)
    d_optimizer = torch.optim.Adam(d.parameters(), lr=args.lr, betas=args.betas, fused=True)

    fixed_z, fixed_labels = utils.noise_for_pictures(args.z_dim, args.conditional, device)  # the same in every picture

    def save_checkpoint(epoch):
        utils.save_checkpoint({"script": "gan.py", "g": g_ema.state_dict(), "g_raw": g.state_dict(),
                               "d": d.state_dict(),
                               "g_optimizer": g_optimizer.state_dict(), "d_optimizer": d_optimizer.state_dict(),
                               "config": vars(args), "epoch": epoch, "rng": utils.rng_state(),
                               "metrics": metrics, "grids": grids}, checkpoint_path)

    # What the figures need from earlier epochs; with --resume, it comes from the checkpoint.
    if checkpoint:
        if "g_raw" not in checkpoint:
            sys.exit(f"error: --resume: {checkpoint_path} was written by an older gan.py; "
                     f"train afresh without --resume")
        g.load_state_dict(checkpoint["g_raw"])
        g_ema.load_state_dict(checkpoint["g"])
        d.load_state_dict(checkpoint["d"])
        g_optimizer.load_state_dict(checkpoint["g_optimizer"])
        d_optimizer.load_state_dict(checkpoint["d_optimizer"])
        metrics, grids = checkpoint["metrics"], checkpoint["grids"]
        utils.set_rng_state(checkpoint["rng"])  # the same batches and noise as an uninterrupted run
    else:
        metrics = []
        with torch.no_grad():
            # grids[epoch]: the samples after that epoch, 0 before training
            grids = [g_ema(fixed_z, fixed_labels).cpu()]
        utils.save_grid(grids[0], os.path.join(args.out_dir, "samples_00.png"), nrow=8)
        save_checkpoint(0)  # so that even a run stopped in its first epoch can be resumed

    # ------------------------------------------------------------------------- training loop
    with utils.CtrlC() as ctrl_c:  # the first Ctrl-C stops the loop after the current batch
        for epoch in range(len(metrics) + 1, args.epochs + 1):  # len(metrics): the epochs already done
            start = time.perf_counter()
            rows = []  # per batch: D's losses on real and fake, G's loss, D(x), D(G(z)); times the batch size
            # disable=None: a bar in a terminal only; a log file gets just the line per epoch below.
            bar = tqdm(loader, desc=f"epoch {epoch}/{args.epochs}", leave=False, disable=None)
            # labels: the classes of the real images, used only with --conditional (the slides' y says real or fake)
            for i, (real_x, labels) in enumerate(bar):
                d.zero_grad()

                # discriminator for real data
                real_pred_y = d(real_x, labels)
                real_y = make_real_y(len(real_x), device)
                real_d_loss = criterion(real_pred_y, real_y)
                real_d_loss.backward()
                # (beyond the slides) keep D's slope at real digits gentle; see r1_penalty. Every
                # R1_EVERY-th step, R1_EVERY times as strong: as good, and a quarter of the cost.
                if args.r1_gamma and i % R1_EVERY == 0:
                    (R1_EVERY * args.r1_gamma / 2 * r1_penalty(d, real_x, labels)).backward()

                # discriminator for fake data: detach, so this step leaves G alone. A conditional G
                # draws the classes of the real batch, so that fakes come in the data's proportions.
                z = torch.randn(len(real_x), args.z_dim, device=device)
                fake_x = g(z, labels)
                fake_pred_y = d(fake_x.detach(), labels)
                fake_y = make_fake_y(len(real_x), device)
                fake_d_loss = criterion(fake_pred_y, fake_y)
                fake_d_loss.backward()

                d_optimizer.step()

                # generator. Its target is "real": it maximises log D(G(z)) rather than minimising
                # log(1 - D(G(z))), whose gradient vanishes early on, when D easily spots fakes.
                g.zero_grad()
                d.requires_grad_(False)  # the gradient flows through D to G; D's own would be thrown away
                fake_pred_y = d(fake_x, labels)
                g_loss = criterion(fake_pred_y, real_y)
                g_loss.backward()
                d.requires_grad_(True)
                g_optimizer.step()
                update_average(g_ema, g, args.ema_decay)  # the averaged G that the pictures show

                rows.append(torch.stack([real_d_loss, fake_d_loss, g_loss, real_pred_y.mean(), fake_pred_y.mean()])
                            .detach() * len(real_x))
                if i % 20 == 0:  # reading a value waits for the GPU, so not on every batch
                    utils.stop_if_not_finite(rows, epoch)
                    bar.set_postfix(d_loss=f"{(real_d_loss + fake_d_loss).item():.2f}", g_loss=f"{g_loss.item():.2f}")
                if ctrl_c.pressed:
                    break
            if ctrl_c.pressed:  # the unfinished epoch is dropped: --resume starts it again
                break
            utils.stop_if_not_finite(rows, epoch)

            # --------------------------------------------------------------------- visualisation, per epoch
            with torch.no_grad():
                grids.append(g_ema(fixed_z, fixed_labels).cpu())
            utils.save_grid(grids[epoch], os.path.join(args.out_dir, f"samples_{epoch:02d}.png"), nrow=8)
            seconds = time.perf_counter() - start
            means = (torch.stack(rows).sum(0) / len(loader.images)).tolist()
            metrics.append({"epoch": epoch, "d_loss_real": means[0], "d_loss_fake": means[1], "g_loss": means[2],
                            "d_real": means[3], "d_fake": means[4], "seconds": seconds,
                            "images_per_second": len(loader.images) / seconds})
            print(f"epoch {epoch:2d}/{args.epochs}  D loss real {means[0]:.3f} fake {means[1]:.3f}  "
                  f"G loss {means[2]:.3f}  D(x) {means[3]:.2f}  D(G(z)) {means[4]:.2f}  "
                  f"{seconds:5.1f} s  {len(loader.images) / seconds:6.0f} images/s", flush=True)
            utils.save_csv(metrics, os.path.join(args.out_dir, "metrics.csv"))
            save_checkpoint(epoch)

    # ------------------------------------------------------------------------- visualisation, at the end
    done = len(metrics)
    if not done:  # stopped before the first epoch ended
        utils.exit_interrupted(args.out_dir, 0)
    shown = sorted({1, min(2, done), (done + 1) // 2, done})
    utils.save_figure(plot_progress(grids, shown), os.path.join(args.out_dir, "progress.png"))
    save_progress_gif(grids, os.path.join(args.out_dir, "progress.gif"))
    utils.save_figure(plot_loss(metrics), os.path.join(args.out_dir, "loss.png"))
    if args.conditional:
        utils.save_figure(utils.plot_class_grid(g_ema, fixed_z[:8], classes),
                          os.path.join(args.out_dir, "class_grid.png"))
    if ctrl_c.pressed:
        utils.exit_interrupted(args.out_dir, done)
    print(f"results in {os.path.abspath(args.out_dir)}")


if __name__ == "__main__":
    main()
