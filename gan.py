"""Train the slides' generative adversarial network (GAN) on MNIST and draw what G learned. The slides' own code
(gan.ipynb in github.com/namsan96/1126_vaegan) is --r1-gamma 0 --ema-decay 0 --betas 0.5 0.999, where G collapses.

In the slides' order: settings, training loop (with its loss), visualisation; main() adds the data, G and D (models.py).
"""
import argparse
import copy
import os
import time

import torch
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont, ImageOps
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

import utils
from models import D, G

R1_EVERY = 4  # the R1 penalty is computed every 4th D step ("lazy regularisation", Karras et al., 2020)


# ----------------------------------------------------------------------------- settings
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--z-dim", type=int, default=10, help="size of the noise z that G turns into an image")
    p.add_argument("--hidden-dim", type=int, default=500, help="units in each hidden layer of G")
    p.add_argument("--d-hidden-dim", type=int, default=500, help="units in each hidden layer of D")
    p.add_argument("--batch-size", type=int, default=200, help="real (and as many fake) images per step")
    p.add_argument("--epochs", type=int, default=30, help="passes over the training images in the whole run")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate, for G and D")
    p.add_argument("--betas", type=float, nargs=2, default=[0.0, 0.99], metavar=("BETA1", "BETA2"), help="Adam's "
                   "averages' decay rates (gradient, squared gradient); the slides' code's 0.5 0.999 add momentum")
    p.add_argument("--r1-gamma", type=float, default=1.0, metavar="GAMMA", help="D's loss gains GAMMA/2 times R1, "
                   f"the batch mean of |grad_x logit D(x)|^2 at real x ({R1_EVERY}x every {R1_EVERY}th step); 0: off")
    p.add_argument("--ema-decay", type=float, default=0.999, metavar="DECAY", help="the pictures and --sample use "
                   "g_ema, which moves 1 - min(DECAY, (1 + t)/(20 + t)) of the way to G at G's step t; 0: G itself")
    p.add_argument("--conditional", action="store_true", help="train the conditional GAN (Mirza & Osindero, 2014): "
                   "G and D also get the class, so that z holds only the style")
    p.add_argument("--sample", type=int, metavar="N", help="do not train: turn N draws of z into images with the "
                   "G in --out-dir, into generated.png; a conditional G draws the classes in turn")
    p.add_argument("--label", type=int, choices=range(10), metavar="K", help=f"with --sample, the one class that a "
                   f"conditional G draws: for mnist the digit, for fashion-mnist {utils.FASHION}")
    p.add_argument("--resume", action="store_true", help="go on with the run in --out-dir as it was started; options "
                   "typed now change it (not its networks, data or seed); a finished run redraws its final pictures")
    p.add_argument("--seed", type=int, default=0, help="random seed: repeats a run on one machine and thread count")
    p.add_argument("--dataset", default="mnist", choices=list(utils.DATASETS), help="digits, or photos of clothes")
    p.add_argument("--data-dir", default="data", help="folder of MNIST/raw/ or FashionMNIST/raw/, or to download into")
    p.add_argument("--out-dir", default="outputs/gan", help="where the pictures, metrics.csv and gan.pt go")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="auto: CUDA, MPS, else CPU")
    args = p.parse_args(argv)
    if args.resume:  # the run goes on as it was started
        args = utils.resumed(p, argv, os.path.join(args.out_dir, "gan.pt"), ["z_dim", "hidden_dim", "d_hidden_dim",
                                                                             "conditional", "dataset", "seed"])
    if args.label is not None and args.sample is None:  # it would be ignored
        p.error("argument --label: goes with --sample, to ask a conditional model for a class")
    if args.epochs < 1 or args.sample is not None and args.sample < 1:  # nothing to train, or to draw
        p.error(f"argument {'--epochs' if args.epochs < 1 else '--sample'}: must be at least 1")
    return args


# ----------------------------------------------------------------------------- training loop
def criterion(pred_y, y):
    """The slides' nn.BCELoss(): -[y log D + (1 - y) log(1 - D)], averaged; a nan gives a nan, where BCELoss crashes."""
    return -utils.log_bernoulli(y, pred_y).mean()


make_real_y = lambda n, device: torch.ones(n, device=device)  # lambdas, as in the slides' code
make_fake_y = lambda n, device: torch.zeros(n, device=device)


def r1_penalty(d, real_x, labels=None):
    """(Beyond the slides) R1 (Mescheder et al., 2018): the squared norm of the gradient of D's logit at each real image
    (summed over its pixels), averaged over the batch. Penalised, it keeps D flat there, and G from collapsing."""
    real_x = real_x.detach().requires_grad_(True)
    # create_graph: the penalty is itself trained on, so its gradient needs a graph of its own
    grad, = torch.autograd.grad(d.logit(real_x, labels).sum(), real_x, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


COLUMNS = {"d_loss_real": "D's loss on real images", "d_loss_fake": "D's loss on fake images",
           "d_real": "D(x): real images", "d_fake": "D(G(z)): fake images, in D's step",
           "g_loss": "G's loss (after D's step)", "d_fake_in_g_step": "D(G(z)) in G's step, after D's"}


def train(g, d, g_ema, g_optimizer, d_optimizer, loader, r1_gamma, ema_decay, step):
    """The slides' training loop, for one epoch from G's step `step`. Returns a row per batch of what COLUMNS names."""
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
        if r1_gamma and i % R1_EVERY == 0:  # (beyond the slides) R1, R1_EVERY times as strong: see r1_penalty
            (R1_EVERY * r1_gamma / 2 * r1_penalty(d, real_x, labels)).backward()

        # discriminator for fake data; detach, so that this step leaves G alone
        z = torch.randn(len(real_x), g.z_dim, device=real_x.device)
        fake_x = g(z, labels)  # --conditional: fakes of the real batch's classes, in the data's proportions
        fake_pred_y = d(fake_x.detach(), labels)
        fake_y = make_fake_y(len(real_x), real_x.device)
        fake_d_loss = criterion(fake_pred_y, fake_y)
        fake_d_loss.backward()

        d_optimizer.step()
        d_step = {"d_loss_real": real_d_loss, "d_loss_fake": fake_d_loss, "d_real": real_pred_y, "d_fake": fake_pred_y}

        # (2) G's step: maximise log D(G(z)), the "non-saturating" loss: its target is "real". The minimax game's
        # log(1 - D(G(z))) has a vanishing gradient early on, when D easily spots fakes (Goodfellow et al., 2014, §3).
        g.zero_grad()
        d.requires_grad_(False)  # (beyond the slides) the gradient flows through D to G; D's own would be wasted
        fake_pred_y = d(fake_x, labels)
        g_loss = criterion(fake_pred_y, real_y)
        g_loss.backward()
        d.requires_grad_(True)
        g_optimizer.step()
        update_average(g_ema, g, ema_decay, step + i)  # (beyond the slides) the pictures' G

        logged = {**d_step, "g_loss": g_loss, "d_fake_in_g_step": fake_pred_y}  # (for the log)
        rows.append(torch.stack([logged[name].mean() for name in COLUMNS]).detach())  # by name: in COLUMNS' order
    return torch.stack(rows)


@torch.no_grad()
def update_average(g_ema, g, decay, step):
    """Move each weight of g_ema 1 - min(decay, (1 + step)/(20 + step)) of the way to G's (decay 0: g_ema becomes G)."""
    # (1 + step)/(20 + step) is 0.05 at step 0 (a fixed 0.999 would keep 74% of the untrained G after epoch 1) and
    # 0.9979 at step 8999, the end of 30 epochs of batch 200: there, any decay above 0.9979 changes nothing.
    decay = min(decay, (1 + step) / (20 + step))
    for p_ema, p in zip(g_ema.parameters(), g.parameters()):
        p_ema.lerp_(p, 1 - decay)


EPOCH_LINE = ("epoch {epoch:2d}/{epochs}  D loss real {d_loss_real:.3f} fake {d_loss_fake:.3f}  G loss {g_loss:.3f}  "
              "D(x) {d_real:.2f}  D(G(z)) {d_fake:.2f}, after D's step {d_fake_in_g_step:.2f}  {seconds:5.1f} s")


# ----------------------------------------------------------------------------- visualisation
@torch.no_grad()
def draw_epoch(g_ema, fixed, epoch, out_dir):
    """samples_XX.png: the fixed noise through the averaged G; returns those samples, for progress.gif."""
    samples = g_ema(*fixed).cpu()
    save_image(samples, os.path.join(out_dir, f"samples_{epoch:02d}.png"), nrow=8, padding=2, pad_value=0.5)
    return samples


def draw_progress(samples, out_dir):
    """progress.gif: the fixed noise's samples after each epoch, captioned; progress.png: 4 frames, as on the slide."""
    font = ImageFont.load_default(15)
    frames = []
    for epoch, images in enumerate(samples):
        grid = make_grid(images, nrow=8, padding=2, pad_value=0.5)[0]  # grey: one of the three equal channels
        grid = Image.fromarray(grid.mul(255).add(0.5).clamp(0, 255).byte().numpy())  # rounded as in save_image
        frame = ImageOps.expand(grid, (0, 24, 0, 0), fill=255)  # a white band above, for the caption
        ImageDraw.Draw(frame).text((6, 3), f"after epoch {epoch}" if epoch else "before training", fill=0, font=font)
        frames.append(frame)
    shown = sorted({0, 1, len(samples) // 2, len(samples) - 1})
    figure = Image.new("L", (len(shown) * (grid.width + 12) - 12, grid.height + 24), 255)
    for i, epoch in enumerate(shown):
        figure.paste(frames[epoch], (i * (grid.width + 12), 0))
    figure.save(os.path.join(out_dir, "progress.png"))
    frames[0].save(os.path.join(out_dir, "progress.gif"), save_all=True, append_images=frames[1:],
                   duration=[250] * (len(samples) - 1) + [2000], loop=0)  # a frame 250 ms, the last 2 s


def plot_loss(metrics):
    """loss.png: each epoch's mean losses, and what D says of real and fake images."""
    epochs = [m["epoch"] for m in metrics]
    left, right = Figure(figsize=(11, 4)).subplots(1, 2)
    for key, label in COLUMNS.items():
        ax = left if "loss" in key else right
        ax.plot(epochs, [m[key] for m in metrics], "o--" if key.endswith("g_step") else "o-", label=label)
    right.axhline(0.5, color="gray", ls="--", lw=1, label="0.5: D cannot tell")
    left.set(xlabel="epoch", ylabel="binary cross-entropy", title="Losses (each epoch's mean)")
    right.set(xlabel="epoch", ylabel="D's probability of 'real'", ylim=(0, 1), title="What D says (each epoch's mean)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    return left.figure


def draw_final_pictures(records, classes, args):
    """The pictures of the whole run, from the records of every epoch."""
    plot_loss(records["metrics"]).savefig(os.path.join(args.out_dir, "loss.png"), dpi=120, bbox_inches="tight")
    if args.conditional:  # the last samples: 8 draws of z (a column each), each as every class (a row each)
        figure = utils.plot_image_table(records["samples"][-1], [f"z{j + 1}" for j in range(8)], classes,
                                        "Each row one class, each column one z: the same style")
        figure.savefig(os.path.join(args.out_dir, "class_grid.png"), dpi=120, bbox_inches="tight")
    draw_progress(records["samples"], args.out_dir)


@torch.no_grad()
def sample(args, path, device):
    """--sample: turn N draws of z into images with the averaged G trained in --out-dir, into generated.png."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    config = checkpoint["config"]
    z, labels, nrow = utils.sample_inputs(args.sample, args.label, config, device)
    g_ema = G(config["z_dim"], utils.X_SHAPE, config["hidden_dim"], 10 if config["conditional"] else 0).to(device)
    g_ema.load_state_dict(checkpoint["g_ema"])
    save_image(g_ema(z, labels), os.path.join(args.out_dir, "generated.png"), nrow=nrow, padding=2, pad_value=0.5)
    print(f"{args.sample} images after epoch {checkpoint['epoch']}: {os.path.abspath(args.out_dir)}/generated.png")


# ----------------------------------------------------------------------------- main: the slides in order
def main(argv=None):
    args = parse_args(argv)
    device = utils.get_device(args.device)
    path = os.path.join(args.out_dir, "gan.pt")
    torch.manual_seed(args.seed)
    if args.sample:
        return sample(args, path, device)
    loader, _, classes = utils.load_data(args.dataset, args.data_dir, args.batch_size, device)

    g = G(args.z_dim, utils.X_SHAPE, args.hidden_dim, n_classes=10 if args.conditional else 0).to(device)
    g_ema = copy.deepcopy(g).requires_grad_(False)  # (beyond the slides) what the pictures show: G averaged, steadier
    d = D(utils.X_SHAPE, args.d_hidden_dim, n_classes=10 if args.conditional else 0).to(device)
    # (beyond the slides) Adam without momentum, which carries each player on past the other: the game circles.
    g_optimizer = torch.optim.Adam(g.parameters(), lr=args.lr, betas=args.betas, fused=True)
    d_optimizer = torch.optim.Adam(d.parameters(), lr=args.lr, betas=args.betas, fused=True)
    # Adam's tiny averages can turn into subnormal floats, which some CPUs compute slowly: they are flushed to 0.
    torch.set_flush_denormal(True)
    fixed = utils.fixed_noise(args.z_dim, args.conditional, device)  # the same noise (and classes) every epoch

    records = {"metrics": [], "samples": [g_ema(*fixed).cpu()]}  # samples[e]: after epoch e (0: before training)
    step = 0  # G's steps so far, which the average's warm-up counts
    if args.resume:  # go on as if never stopped; a new --lr, --betas or --batch-size applies from the next epoch
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        for name, net in [("g", g), ("g_ema", g_ema), ("d", d)]:
            net.load_state_dict(checkpoint[name])
        for name, optimizer in [("g_optimizer", g_optimizer), ("d_optimizer", d_optimizer)]:
            optimizer.load_state_dict({**checkpoint[name], "param_groups": optimizer.state_dict()["param_groups"]})
        records, step = checkpoint["records"], checkpoint["step"]
        for rng, state in zip(utils.rngs(device), checkpoint["rng"]):  # the CPU's, and a GPU's where it has one
            rng.set_rng_state(state)
    os.makedirs(args.out_dir, exist_ok=True)

    for epoch in range(len(records["metrics"]) + 1, args.epochs + 1):
        start = time.perf_counter()
        batches = tqdm(loader, f"epoch {epoch}/{args.epochs}", leave=False, disable=None)
        rows = train(g, d, g_ema, g_optimizer, d_optimizer, batches, args.r1_gamma, args.ema_decay, step)
        step += len(rows)
        records["samples"].append(draw_epoch(g_ema, fixed, epoch, args.out_dir))
        records["metrics"].append({"epoch": epoch, **dict(zip(COLUMNS, rows.mean(0).tolist())),
                                   "seconds": time.perf_counter() - start})
        torch.save({"g": g.state_dict(), "g_ema": g_ema.state_dict(), "d": d.state_dict(), "records": records,
                    "g_optimizer": g_optimizer.state_dict(), "d_optimizer": d_optimizer.state_dict(), "epoch": epoch,
                    "step": step, "config": vars(args), "rng": [rng.get_rng_state() for rng in utils.rngs(device)]},
                   path + ".tmp")
        os.replace(path + ".tmp", path)  # in one step: a stop at any moment leaves the last finished epoch's checkpoint
        utils.write_metrics(os.path.join(args.out_dir, "metrics.csv"), records["metrics"])
        print(EPOCH_LINE.format(**records["metrics"][-1], epochs=args.epochs), flush=True)

    draw_final_pictures(records, classes, args)
    print(f"pictures, metrics.csv and gan.pt in {os.path.abspath(args.out_dir)}")


if __name__ == "__main__":
    main()
