"""Train the slides' variational auto-encoder (VAE) on MNIST and draw what it learned.

    python vae.py                      # the slides' settings: z = 2, 10 epochs
    python vae.py --z-dim 20           # a sharper model; no latent-space plots
    python vae.py --sample 64          # 64 new images from the model trained above
    python vae.py --help               # every option

The file follows the slides, top to bottom: settings, data, network (the VAE, in models.py), loss,
training loop, visualisation; main(), at the end, runs them in that order. What a run also needs
(checkpoints, --resume, Ctrl-C, the progress bar, clear errors) lives in utils.py.
"""
import argparse
import math
import os
import time

import utils  # first: it makes a missing or mismatched package a one-line error

import matplotlib.pyplot as plt
import torch
from torch import distributions as dist
from torchvision.utils import make_grid
from tqdm import tqdm

from models import VAE


# ----------------------------------------------------------------------------- settings
def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train the slides' VAE on MNIST (or Fashion-MNIST); pictures, "
                                "metrics and the trained model land in --out-dir.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--z-dim", type=utils.positive(int), default=2,
                   help="size of the latent code z; 2 can be drawn as a plane (latent_space.png)")
    p.add_argument("--hidden-dim", type=utils.positive(int), default=500, help="units in each hidden layer")
    p.add_argument("--batch-size", type=utils.positive(int), default=200, help="images per training step")
    p.add_argument("--lr", type=utils.positive(float), default=1e-3, help="Adam's learning rate")
    p.add_argument("--epochs", type=utils.positive(int), default=10,
                   help="passes over the 60,000 training images (in all, when resuming)")
    p.add_argument("--iw-samples", type=utils.positive(int, zero_ok=True), default=10, metavar="K",
                   help="samples per test image for the importance-weighted estimate of log p(x) at the end; "
                   "more is closer to log p(x) and slower; 0 skips it")
    p.add_argument("--seed", type=utils.seed, default=0,
                   help="random seed; the same seed repeats a run exactly on the same CPU")
    p.add_argument("--dataset", default="mnist", choices=list(utils.DATASETS),
                   help="mnist: handwritten digits; fashion-mnist: Zalando's photos of clothes, "
                   "also 28x28 pixels in 10 classes")
    p.add_argument("--data-dir", default="data",
                   help="folder holding MNIST/raw/ or FashionMNIST/raw/ (downloaded there when missing)")
    p.add_argument("--out-dir", default="outputs/vae", help="where pictures, metrics.csv and vae.pt go")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where to train; auto takes CUDA, then Apple's MPS, then the CPU")
    p.add_argument("--resume", action="store_true",
                   help="go on from the checkpoint in --out-dir, up to --epochs epochs in all")
    p.add_argument("--sample", type=utils.positive(int), metavar="N",
                   help="do not train: decode N draws of z ~ N(0, I) with the model trained in --out-dir (its settings "
                   "come from the checkpoint) into generated.png, and exit; a conditional model draws the classes in "
                   "turn, ten to a row, or only the class --label")
    p.add_argument("--conditional", action="store_true",
                   help="train the conditional VAE (Sohn et al., 2015): the encoder and the decoder are also given "
                   "the class, so that z holds only the style, and a class can be asked for with --label")
    p.add_argument("--label", type=int, choices=range(utils.N_CLASSES), metavar="K",
                   help=f"with --sample, of a conditional model: {utils.label_help()}")
    return utils.one_line_errors(p).parse_args(argv)


# ----------------------------------------------------------------------------- data
def load_data(args, device):
    """The training and test images, held whole on the device in batches, and the class names."""
    (train_images, train_labels), (test_images, test_labels), classes = utils.load_dataset(args.dataset, args.data_dir)
    loader = utils.BatchLoader(train_images, train_labels, args.batch_size, device)
    test_loader = utils.BatchLoader(test_images, test_labels, 1000, device, shuffle=False)
    return loader, test_loader, classes


# ----------------------------------------------------------------------------- network
# The slide's VAE (encoder, mu_net, sigma_net, decoder; encode and decode) is in models.py.


# ----------------------------------------------------------------------------- loss
def elbo_terms(x, x_reconst, z_posterior, z_prior):
    """The ELBO's two terms for each image in the batch: log p(x|z) and KL(q(z|x) || p(z))."""
    # The Bernoulli log-likelihood of the pixels, sum_d x_d log x'_d + (1 - x_d) log(1 - x'_d),
    # finite even where the decoder outputs exactly 0 or 1.
    log_likelihood = utils.log_bernoulli(x, x_reconst).flatten(1).sum(1)
    # In closed form, 1/2 sum_d (mu_d^2 + sigma_d^2 - log sigma_d^2 - 1) (Kingma & Welling, 2014,
    # appendix B); the slide's formula lacks the 1/2, its code (kl_divergence) has it.
    kl = dist.kl_divergence(z_posterior, z_prior).sum(1)
    return log_likelihood, kl


def compute_elbo(x, x_reconst, z_posterior, z_prior):
    """The slide's loss: the ELBO, log p(x|z) - KL(q(z|x) || p(z)), averaged over the batch.

    Fixed from the slide: the KL is taken of the `z_posterior` argument (the slide read the
    training loop's `z_dist`).
    """
    log_likelihood, kl = elbo_terms(x, x_reconst, z_posterior, z_prior)
    return (log_likelihood - kl).mean()


# ----------------------------------------------------------------------------- training loop
def train(vae, optimizer, loader, z_prior):
    """The slide's training loop, for one epoch. Returns each batch's loss, for the log and loss.png."""
    losses = []
    for x, y in loader:  # y, the class, is used only with --conditional
        # (the slide's x = x.to(device) is not needed: the loader's batches are already on the device)
        z_dist = vae.encode(x, y)
        z = z_dist.rsample()  # reparameterised, so the gradient flows through the sample
        x_reconst = vae.decode(z, y)

        elbo = compute_elbo(x, x_reconst, z_dist, z_prior)
        loss = -elbo

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())  # (for the log)
    return torch.stack(losses)


@torch.no_grad()
def evaluate(vae, loader, z_prior):
    """The test pass: -ELBO over the whole loader in nats per image, with its reconstruction and KL parts."""
    totals = 0
    for x, y in loader:
        z_posterior = vae.encode(x, y)
        x_reconst = vae.decode(z_posterior.rsample(), y)
        log_likelihood, kl = elbo_terms(x, x_reconst, z_posterior, z_prior)
        totals = totals + torch.stack([kl - log_likelihood, -log_likelihood, kl]).sum(1)
    return (totals / len(loader.images)).tolist()


def epoch_line(row, epochs):
    """What each epoch prints: its row of metrics.csv in one line."""
    return (f"epoch {row['epoch']:2d}/{epochs}  train -ELBO {row['train_neg_elbo']:6.1f}  test -ELBO "
            f"{row['test_neg_elbo']:6.1f} (reconstruction {row['test_reconstruction']:6.1f} + KL {row['test_kl']:4.1f})"
            f"  {row['seconds']:5.1f} s  {row['images_per_second']:6.0f} images/s")


@torch.no_grad()
def estimate_neg_log_likelihood(vae, loader, z_prior, k):
    """-log p(x) over the loader in nats per image, estimated with K importance samples per image.

    log p(x) = log E_q(z|x)[w] with w = p(x|z) p(z) / q(z|x). The ELBO is E_q[log w], a lower
    bound, short of log p(x) by KL(q(z|x) || p(z|x)). Averaging K weights before the log
    (Burda et al., 2016) gives a bound that tightens as K grows; with K = 1 it is the ELBO.
    """
    total = 0
    for x, y in tqdm(loader, desc="importance sampling", leave=False, disable=None):
        z_posterior = vae.encode(x, y)
        log_w = []
        for _ in range(k):
            z = z_posterior.sample()
            log_w.append(utils.log_bernoulli(x, vae.decode(z, y)).flatten(1).sum(1)
                         + z_prior.log_prob(z).sum(1) - z_posterior.log_prob(z).sum(1))
        total = total + torch.logsumexp(torch.stack(log_w), 0).sum()  # log of the sum of the K weights
    return -(total.item() / len(loader.images) - math.log(k))  # log of their mean


# ----------------------------------------------------------------------------- visualisation
def interleave_rows(top, bottom, nrow):
    """Rows of `top` images, each followed by the row of `bottom` images beneath it."""
    rows = torch.stack([top.unflatten(0, (-1, nrow)), bottom.unflatten(0, (-1, nrow))], 1)
    return rows.flatten(0, 2)


def plot_reconstruction_progress(originals, names, reconstructions):
    """The slide's figure: each row one test image, then its reconstruction after each epoch."""
    epochs = len(reconstructions)
    shown = sorted(set(torch.linspace(0, epochs - 1, min(epochs, 10)).round().long().tolist()))
    return utils.plot_image_table([originals] + [reconstructions[e] for e in shown],
                            ["original"] + [f"epoch {e + 1}" for e in shown], names, "Reconstruction progress")


@torch.no_grad()
def plot_interpolation(vae, x_from, x_to, names_from, names_to, steps=11):
    """Decode the straight line in z from each x_from's posterior mean to the x_to's beside it."""
    z_from, z_to = vae.encode(x_from).mean, vae.encode(x_to).mean
    ts = torch.linspace(0, 1, steps).tolist()
    path = [vae.decode(torch.lerp(z_from, z_to, t)).cpu() for t in ts]  # (1 - t) z_from + t z_to
    return utils.plot_image_table([x_from.cpu()] + path + [x_to.cpu()],
                            ["from"] + [f"t = {t:.1f}" for t in ts] + ["to"],
                            [f"{a} → {b}" for a, b in zip(names_from, names_to)],
                            "Walking in a straight line through z")


def plot_loss(batch_losses, metrics):
    """loss.png: every batch's loss, and each epoch's train and test -ELBO. `batch_losses` holds a tensor per
    epoch, whose batches spread evenly over that epoch (their number changes with --batch-size on --resume)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = torch.cat([epoch - 1 + torch.arange(1, len(losses) + 1) / len(losses)
                       for epoch, losses in enumerate(batch_losses, start=1)])
    ax.plot(steps, torch.cat(batch_losses), lw=0.5, alpha=0.5, color="tab:blue", label="train, per batch")
    epochs = [m["epoch"] for m in metrics]
    # An epoch's train mean averages the whole epoch, so it sits at the epoch's middle.
    ax.plot([e - 0.5 for e in epochs], [m["train_neg_elbo"] for m in metrics], "o-", color="tab:blue",
            label="train, mean over the epoch")
    ax.plot(epochs, [m["test_neg_elbo"] for m in metrics], "s-", color="tab:orange", label="test, after the epoch")
    # The first batches (over 500 nats) would squash the rest of the curve.
    top = 1.3 * max(metrics[0]["train_neg_elbo"], metrics[0]["test_neg_elbo"])
    bottom = min(torch.cat(batch_losses).min().item(), min(m["test_neg_elbo"] for m in metrics))
    ax.set_ylim(0.95 * bottom, top)
    ax.set(xlabel="epoch", ylabel="-ELBO (nats per image)", title="VAE loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


@torch.no_grad()
def plot_latent_space(vae, device, classes, labels=(None,)):
    """The slide's "Learned z space": decode a grid of z laid on the prior's 5%-95% quantiles.

    Equal steps in probability rather than in z, so the grid spans where the prior puts its
    mass and every row and column holds the same share of it. A conditional model gets one
    panel for each class in `labels`: that class's plane of styles.
    """
    n = 20 if len(labels) == 1 else 10  # images to a side
    z = dist.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
    z1, z2 = torch.meshgrid(z, z.flip(0), indexing="xy")  # z2 grows upwards, as on a plot
    grid_z = torch.stack([z1, z2], -1).view(-1, 2).to(device)
    columns = min(len(labels), 5)
    rows = -(-len(labels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(8, 8) if len(labels) == 1 else (3.2 * columns, 3.4 * rows),
                             squeeze=False)
    for ax, label in zip(axes.flat, labels):
        y = None if label is None else torch.full((n * n,), label, device=device)
        images = vae.decode(grid_z, y).cpu()
        ax.imshow(make_grid(images, nrow=n, padding=0)[0].numpy(), cmap="gray", extent=[0, n, 0, n])
        ticks = [0, n // 4, n // 2, 3 * n // 4, n - 1]
        ax.set_xticks([t + 0.5 for t in ticks], [f"{z[t]:.1f}" for t in ticks])
        ax.set_yticks([t + 0.5 for t in ticks], [f"{z[t]:.1f}" for t in ticks])
        ax.set(xlabel="$z_1$", ylabel="$z_2$",
               title="Learned z space" if label is None else f"Learned z space of {classes[label]}")
    return fig


@torch.no_grad()
def plot_latent_scatter(vae, loader, classes):
    """Where the encoder puts each test image: the posterior mean, coloured by its class.

    A conditional encoder is given the class, so z need not tell the classes apart: they overlap.
    """
    mus, labels = zip(*[(vae.encode(x, y).mean.cpu(), y.cpu()) for x, y in loader])
    mu, label = torch.cat(mus), torch.cat(labels)
    fig, ax = plt.subplots(figsize=(7, 6))
    for c in label.unique().tolist():
        m = mu[label == c]
        ax.scatter(m[:, 0], m[:, 1], s=2, alpha=0.6, color=plt.cm.tab10(c), label=classes[c])
    ax.legend(markerscale=6, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set(xlabel="$z_1$", ylabel="$z_2$", title="Posterior means of the test set")
    ax.set_aspect("equal")
    return fig


def fixed_inputs(test_loader, z_dim, conditional, device):
    """What every epoch's pictures show, the same each time so that they compare: 32 test images to
    reconstruct, the first test image of each class (reconstruction_progress.png), the noise to decode."""
    first_of_each = [test_loader.labels.tolist().index(c) for c in range(utils.N_CLASSES)]
    return {"shown": test_loader.batch(slice(32)), "progress": test_loader.batch(first_of_each),
            "noise": utils.noise_for_pictures(z_dim, conditional, device)}


@torch.no_grad()
def draw_epoch(vae, fixed, epoch, out_dir):
    """reconstruction_XX.png and samples_XX.png; returns this epoch's row of reconstruction_progress.png."""
    (shown_x, shown_y), (progress_x, progress_y) = fixed["shown"], fixed["progress"]
    sample_z, sample_y = fixed["noise"]
    utils.save_grid(interleave_rows(shown_x, vae.decode(vae.encode(shown_x, shown_y).mean, shown_y), 8),
                    os.path.join(out_dir, f"reconstruction_{epoch:02d}.png"), nrow=8)
    utils.save_grid(vae.decode(sample_z, sample_y), os.path.join(out_dir, f"samples_{epoch:02d}.png"), nrow=8)
    return vae.decode(vae.encode(progress_x, progress_y).mean, progress_y).cpu()


def draw_final_pictures(vae, checkpoint, fixed, test_loader, classes, out_dir):
    """The pictures of the whole run, from the model and records of its last checkpoint."""
    config, (progress_x, _), (sample_z, _) = checkpoint["config"], fixed["progress"], fixed["noise"]
    utils.save_figure(plot_reconstruction_progress(progress_x.cpu(), classes, checkpoint["progress"]),
                      os.path.join(out_dir, "reconstruction_progress.png"))
    utils.save_figure(plot_loss(checkpoint["batch_losses"], checkpoint["metrics"]), os.path.join(out_dir, "loss.png"))
    if config["conditional"]:
        utils.save_figure(utils.plot_class_grid(vae.decode, sample_z[:8], classes),
                          os.path.join(out_dir, "class_grid.png"))
    else:  # each class's first test image, to the next class's: 0 to 1, 1 to 2, ..., 9 to 0
        figure = plot_interpolation(vae, progress_x, progress_x.roll(-1, 0), classes, classes[1:] + classes[:1])
        utils.save_figure(figure, os.path.join(out_dir, "interpolation.png"))
    if config["z_dim"] == 2:  # a conditional model gets a plane of styles for each class
        labels = range(len(classes)) if config["conditional"] else [None]
        utils.save_figure(plot_latent_space(vae, progress_x.device, classes, labels),
                          os.path.join(out_dir, "latent_space.png"))
        utils.save_figure(plot_latent_scatter(vae, test_loader, classes), os.path.join(out_dir, "latent_scatter.png"))


@torch.no_grad()
def sample(checkpoint_path, n, label, device):
    """--sample: rebuild the trained VAE from its checkpoint and decode n draws of z ~ N(0, I)."""
    checkpoint = utils.read_checkpoint(checkpoint_path, "vae.py", "--sample")
    config = checkpoint["config"]
    vae = VAE(utils.X_SHAPE, config["z_dim"], config["hidden_dim"], utils.N_CLASSES * config["conditional"]).to(device)
    vae.load_state_dict(checkpoint["model"])
    z, y, nrow = utils.inputs_to_sample(n, label, config["conditional"], vae.z_dim, device)
    path = os.path.join(os.path.dirname(checkpoint_path), "generated.png")
    utils.prepare_out_dir(os.path.dirname(path))
    utils.save_grid(vae.decode(z, y), path, nrow)
    print(f"{n} images from the {config['dataset']} VAE (z = {vae.z_dim}) after epoch {checkpoint['epoch']}: "
          f"{os.path.abspath(path)}")


# ----------------------------------------------------------------------------- main: the slides in order
def checkpoint_of(vae, optimizer, args, epoch, records):
    """The checkpoint, a plain dict: the model, the optimizer, the settings, the epochs done and their records."""
    return {"script": "vae.py", "model": vae.state_dict(), "optimizer": optimizer.state_dict(), "config": vars(args),
            "epoch": epoch, **records}


@utils.exit_cleanly("--batch-size, --hidden-dim or --z-dim (with --sample: N)")
def main(argv=None):
    args = parse_args(argv)
    device = utils.get_device(args.device)
    utils.seed_everything(args.seed)
    checkpoint_path = os.path.join(args.out_dir, "vae.pt")
    if args.sample:
        return sample(checkpoint_path, args.sample, args.label, device)
    checkpoint = utils.start_run("vae.py", args, ["dataset", "z_dim", "hidden_dim", "conditional", "seed"])

    loader, test_loader, classes = load_data(args, device)

    # --conditional: the encoder and the decoder also get the class, as a one-hot vector (see models.py).
    vae = VAE(utils.X_SHAPE, args.z_dim, args.hidden_dim, n_classes=utils.N_CLASSES * args.conditional).to(device)
    # fused: one kernel updates every parameter, instead of about ten passes over each.
    optimizer = torch.optim.Adam(vae.parameters(), lr=args.lr, fused=True)
    # Adam's running averages of tiny gradients become subnormal floats, which a CPU handles up to a
    # hundred times slower; rounding them to zero costs nothing in accuracy.
    torch.set_flush_denormal(True)
    z_prior = dist.Normal(torch.zeros(args.z_dim, device=device), torch.ones(args.z_dim, device=device))
    fixed = fixed_inputs(test_loader, args.z_dim, args.conditional, device)

    records = {"metrics": [], "batch_losses": [], "progress": []}  # what the final pictures need of each epoch
    if checkpoint:  # --resume
        vae.load_state_dict(checkpoint["model"])
        utils.load_optimizer(optimizer, checkpoint["optimizer"])
        records = {key: checkpoint[key] for key in records}
        utils.set_rng_state(checkpoint["rng"])  # the same batches and noise as an uninterrupted run
    utils.prepare_out_dir(args.out_dir, "vae.py", args.resume)  # only now: bad input above leaves nothing behind
    if not checkpoint:
        utils.save_checkpoint(checkpoint_of(vae, optimizer, args, 0, records), checkpoint_path)

    # Each epoch: the slide's loop, then the epoch's pictures, its checkpoint, its line. Ctrl-C stops at once.
    with utils.ctrl_c_stops_training() as stop:
        for epoch in range(len(records["metrics"]) + 1, args.epochs + 1):
            start = time.perf_counter()
            losses = train(vae, optimizer, utils.progress_bar(loader, epoch, args.epochs), z_prior)
            utils.stop_if_not_finite(losses, epoch)
            test_neg_elbo, test_reconstruction, test_kl = evaluate(vae, test_loader, z_prior)
            records["progress"].append(draw_epoch(vae, fixed, epoch, args.out_dir))
            records["batch_losses"].append(losses.cpu())
            records["metrics"].append({"epoch": epoch, "train_neg_elbo": loader.mean_over_images(losses).item(),
                                       "test_neg_elbo": test_neg_elbo, "test_reconstruction": test_reconstruction,
                                       "test_kl": test_kl, **utils.speed(start, len(loader.images))})
            utils.end_epoch(checkpoint_of(vae, optimizer, args, epoch, records), checkpoint_path,
                            epoch_line(records["metrics"][-1], args.epochs))

    checkpoint = utils.last_checkpoint(checkpoint_path, "vae.py")  # the last finished epoch, even after Ctrl-C
    vae.load_state_dict(checkpoint["model"])
    if checkpoint["epoch"]:
        draw_final_pictures(vae, checkpoint, fixed, test_loader, classes, args.out_dir)
    if stop.pressed:
        utils.exit_interrupted(args.out_dir, checkpoint["epoch"])
    print(f"final test -ELBO {checkpoint['metrics'][-1]['test_neg_elbo']:.1f} nats per image")
    if args.iw_samples:
        neg_log_likelihood = estimate_neg_log_likelihood(vae, test_loader, z_prior, args.iw_samples)
        print(f"final test -log p(x{'|y' if args.conditional else ''}) <= {neg_log_likelihood:.1f} nats per image "
              f"(importance-weighted bound, K = {args.iw_samples} samples per image)")
    print(f"results in {os.path.abspath(args.out_dir)}")


if __name__ == "__main__":
    main()
