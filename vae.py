"""Train the slides' variational auto-encoder (VAE) on MNIST and draw what it learned.

In the slides' order: settings, loss, training loop, visualisation; main() adds the data and the VAE (models.py)."""
import argparse
import math
import os
import time

import torch
from matplotlib.figure import Figure
from torch import distributions as dist
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

import utils
from models import VAE


# ----------------------------------------------------------------------------- settings
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--z-dim", type=int, default=2, help="size of the latent z; 2 is drawn as a plane too")
    p.add_argument("--hidden-dim", type=int, default=500, help="units in each hidden layer")
    p.add_argument("--batch-size", type=int, default=200, help="images per training step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training images in the whole run")
    p.add_argument("--iw-samples", type=int, default=10, metavar="K", help="samples per test image for the "
                   "importance-weighted bound on -log p(x) at the end: more, tighter; 0 skips it")
    p.add_argument("--conditional", action="store_true", help="train the conditional VAE (Sohn et al., 2015): the "
                   "encoder and the decoder also get the class, so that z holds only the style")
    p.add_argument("--sample", type=int, metavar="N", help="do not train: decode N draws of z ~ N(0, I) with the "
                   "model in --out-dir into generated.png; a conditional one draws the classes in turn")
    p.add_argument("--label", type=int, choices=range(10), metavar="K", help=f"with --sample, the one class that a "
                   f"conditional model draws: for mnist the digit, for fashion-mnist {utils.FASHION}")
    p.add_argument("--resume", action="store_true", help="go on with the run in --out-dir as it was started; options "
                   "typed now change it (not its network, data or seed); a finished run redraws its final pictures")
    p.add_argument("--seed", type=int, default=0, help="random seed: repeats a run on one machine and thread count")
    p.add_argument("--dataset", default="mnist", choices=list(utils.DATASETS), help="digits, or photos of clothes")
    p.add_argument("--data-dir", default="data", help="folder of MNIST/raw/ or FashionMNIST/raw/, or to download into")
    p.add_argument("--out-dir", default="outputs/vae", help="where the pictures, metrics.csv and vae.pt go")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="auto: CUDA, MPS, else CPU")
    args = p.parse_args(argv)
    if args.resume:  # the run goes on as it was started
        args = utils.resumed(p, argv, os.path.join(args.out_dir, "vae.pt"), ["z_dim", "hidden_dim", "conditional",
                                                                             "dataset", "seed"])
    if args.label is not None and args.sample is None:  # it would be ignored
        p.error("argument --label: goes with --sample, to ask a conditional model for a class")
    if args.epochs < 1 or args.sample is not None and args.sample < 1:  # nothing to train, or to draw
        p.error(f"argument {'--epochs' if args.epochs < 1 else '--sample'}: must be at least 1")
    return args


# ----------------------------------------------------------------------------- loss
def compute_elbo(x, x_reconst, z_posterior, z_prior):
    """The slide's loss: the ELBO, log p(x|z) - KL(q(z|x) || p(z)), averaged over the batch."""
    # The Bernoulli log-likelihood of the pixels, sum_d x_d log x'_d + (1 - x_d) log(1 - x'_d).
    log_likelihood = utils.log_bernoulli(x, x_reconst).flatten(1).sum(1)
    # In closed form, 1/2 sum_d (mu_d^2 + sigma_d^2 - log sigma_d^2 - 1) (Kingma & Welling, 2014, appendix B). The
    # slide's formula lacks the 1/2 (its code has it); its code reads the loop's z_dist where z_posterior is meant.
    kl = dist.kl_divergence(z_posterior, z_prior).sum(1)
    return (log_likelihood - kl).mean()


# ----------------------------------------------------------------------------- training loop
def train(vae, optimizer, loader, z_prior):
    """The slide's training loop, for one epoch. Returns each batch's loss, for the log and loss.png."""
    vae.train()
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
    vae.eval()
    totals = 0
    for x, y in loader:
        z_posterior = vae.encode(x, y)
        elbo = compute_elbo(x, vae.decode(z_posterior.rsample(), y), z_posterior, z_prior)
        totals = totals + len(x) * torch.stack([-elbo, dist.kl_divergence(z_posterior, z_prior).sum(1).mean()])
    neg_elbo, kl = (totals / len(loader.images)).tolist()
    return {"test_neg_elbo": neg_elbo, "test_reconstruction": neg_elbo - kl, "test_kl": kl}


@torch.no_grad()
def estimate_neg_log_likelihood(vae, loader, z_prior, k):
    """-log p(x) in nats per image, by importance sampling: log p(x) = log E_q(z|x)[w], w = p(x|z) p(z) / q(z|x). The
    ELBO, E_q[log w], falls short by KL(q(z|x) || p(z|x)); K weights averaged inside the log close in (Burda et al.)."""
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


EPOCH_LINE = ("epoch {epoch:2d}/{epochs}  train -ELBO {train_neg_elbo:6.1f}  test -ELBO {test_neg_elbo:6.1f} "
              "(reconstruction {test_reconstruction:6.1f} + KL {test_kl:4.1f})  {seconds:5.1f} s")


# ----------------------------------------------------------------------------- visualisation
@torch.no_grad()
def draw_epoch(vae, fixed, epoch, out_dir):
    """reconstruction_XX.png and samples_XX.png; returns the epoch's column of reconstruction_progress.png."""
    (shown_x, shown_y), (progress_x, progress_y), (sample_z, sample_y) = fixed
    rows = [shown_x, vae.decode(vae.encode(shown_x, shown_y).mean, shown_y)]  # each row of 8 above its reconstruction
    pairs = torch.stack([images.unflatten(0, (-1, 8)) for images in rows], 1).flatten(0, 2)
    for name, images in [("reconstruction", pairs), ("samples", vae.decode(sample_z, sample_y))]:
        save_image(images, os.path.join(out_dir, f"{name}_{epoch:02d}.png"), nrow=8, padding=2, pad_value=0.5)
    return vae.decode(vae.encode(progress_x, progress_y).mean, progress_y).cpu()


def plot_reconstruction_progress(originals, names, reconstructions):
    """The slide's figure: each row one test image, then its reconstruction after each epoch (ten at most)."""
    shown = torch.linspace(0, len(reconstructions) - 1, min(len(reconstructions), 10)).round().long().unique()
    images = torch.stack([originals] + [reconstructions[e] for e in shown], 1).flatten(0, 1)
    return utils.plot_image_table(images, ["original"] + [f"epoch {e + 1}" for e in shown], names,
                                  "Reconstruction progress")


def plot_interpolation(vae, x_from, x_to, names_from, names_to, steps=11):
    """Decode the straight line in z from each x_from's posterior mean to the x_to's beside it."""
    z_from, z_to = vae.encode(x_from).mean, vae.encode(x_to).mean
    ts = torch.linspace(0, 1, steps).tolist()
    path = [vae.decode(torch.lerp(z_from, z_to, t)) for t in ts]  # (1 - t) z_from + t z_to
    return utils.plot_image_table(torch.stack([x_from] + path + [x_to], 1).flatten(0, 1),
                                  ["from"] + [f"t = {t:.1f}" for t in ts] + ["to"],
                                  [f"{a} → {b}" for a, b in zip(names_from, names_to)],
                                  "Walking in a straight line through z")


def plot_loss(batch_losses, metrics):
    """loss.png: each batch's loss (spread over its epoch: --resume may change --batch-size), each epoch's -ELBO."""
    ax = Figure(figsize=(7, 4)).subplots()
    steps = torch.cat([e + torch.arange(1, len(losses) + 1) / len(losses) for e, losses in enumerate(batch_losses)])
    ax.plot(steps, torch.cat(batch_losses), lw=0.5, alpha=0.5, color="tab:blue", label="train, per batch")
    epochs = [m["epoch"] for m in metrics]
    # An epoch's train mean averages the whole epoch, so it sits at the epoch's middle.
    epoch_means = [m["train_neg_elbo"] for m in metrics]
    ax.plot([e - 0.5 for e in epochs], epoch_means, "o-", color="tab:blue", label="train, mean over the epoch")
    ax.plot(epochs, [m["test_neg_elbo"] for m in metrics], "s-", color="tab:orange", label="test, after the epoch")
    # The first batches, of 500 nats and more, would squash the rest of the curve.
    ax.set(xlabel="epoch", ylabel="-ELBO (nats per image)", title="VAE loss", ylim=(None, 1.3 * epoch_means[0]))
    ax.grid(alpha=0.3)
    ax.legend()
    return ax.figure


def plot_latent_space(vae, device, classes, panels):
    """The slide's "Learned z space": z on the prior's quantiles, decoded; a panel per class in `panels` (or [None])."""
    n = 20 if len(panels) == 1 else 10  # images to a side
    z = dist.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
    z1, z2 = torch.meshgrid(z, z.flip(0), indexing="xy")  # z2 grows upwards, as on a plot
    grid_z = torch.stack([z1, z2], -1).view(-1, 2).to(device)
    fig = Figure(figsize=(8, 8) if len(panels) == 1 else (16, 6.8))  # one panel, or two rows of five
    cells = [0, n // 4, n // 2, 3 * n // 4, n - 1]  # the cells whose z the axes give
    at, z_at = [c + 0.5 for c in cells], [f"{z[c]:.1f}" for c in cells]
    for ax, panel in zip(fig.subplots(math.ceil(len(panels) / 5), min(len(panels), 5), squeeze=False).flat, panels):
        y = None if panel is None else torch.full((n * n,), panel, device=device)
        grid = make_grid(vae.decode(grid_z, y).cpu(), nrow=n, padding=0)[0]
        ax.imshow(grid.numpy(), cmap="gray", extent=[0, n, 0, n])
        ax.set(xticks=at, xticklabels=z_at, yticks=at, yticklabels=z_at, xlabel="$z_1$", ylabel="$z_2$")
        ax.set_title("Learned z space" if panel is None else f"Learned z space of {classes[panel]}")
    return fig


def plot_latent_scatter(vae, loader, classes):
    """Each test image's posterior mean, coloured by its class (given the class, a conditional encoder mixes them)."""
    mu, label = map(torch.cat, zip(*[(vae.encode(x, y).mean.cpu(), y.cpu()) for x, y in loader]))
    ax = Figure(figsize=(7, 6)).subplots()
    for c in label.unique().tolist():
        ax.scatter(*mu[label == c].T, s=2, alpha=0.6, color=f"C{c}", label=classes[c])
    ax.legend(markerscale=6, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set(xlabel="$z_1$", ylabel="$z_2$", title="Posterior means of the test set", aspect="equal")
    return ax.figure


@torch.no_grad()
def draw_final_pictures(vae, records, fixed, test_loader, classes, args):
    """The pictures of the whole run: of the model after its last epoch, and of the records of every epoch."""
    _, (x, _), (z, y) = fixed
    figs = {"reconstruction_progress.png": plot_reconstruction_progress(x.cpu(), classes, records["reconstructions"]),
            "loss.png": plot_loss(records["batch_losses"], records["metrics"])}
    if args.conditional:
        figs["class_grid.png"] = utils.plot_image_table(vae.decode(z, y), [f"z{j + 1}" for j in range(8)], classes,
                                                        "Each row one class, each column one z: the same style")
    else:  # each class's first test image, to the next class's: 0 to 1, 1 to 2, ..., 9 to 0
        figs["interpolation.png"] = plot_interpolation(vae, x, x.roll(-1, 0), classes, classes[1:] + classes[:1])
    if args.z_dim == 2:  # a conditional model gets a plane of styles for each class
        figs["latent_space.png"] = plot_latent_space(vae, x.device, classes, range(10) if args.conditional else [None])
        figs["latent_scatter.png"] = plot_latent_scatter(vae, test_loader, classes)
    for name, figure in figs.items():
        figure.savefig(os.path.join(args.out_dir, name), dpi=120, bbox_inches="tight")


@torch.no_grad()
def sample(args, path, device):
    """--sample: decode N draws of z ~ N(0, I) with the VAE trained in --out-dir, into generated.png."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    config = checkpoint["config"]
    z, y, nrow = utils.sample_inputs(args.sample, args.label, config, device)
    vae = VAE(utils.X_SHAPE, config["z_dim"], config["hidden_dim"], 10 if config["conditional"] else 0).to(device)
    vae.load_state_dict(checkpoint["model"])
    save_image(vae.decode(z, y), os.path.join(args.out_dir, "generated.png"), nrow=nrow, padding=2, pad_value=0.5)
    print(f"{args.sample} images after epoch {checkpoint['epoch']}: {os.path.abspath(args.out_dir)}/generated.png")


# ----------------------------------------------------------------------------- main: the slides in order
def main(argv=None):
    args = parse_args(argv)
    device = utils.get_device(args.device)
    path = os.path.join(args.out_dir, "vae.pt")
    torch.manual_seed(args.seed)
    if args.sample:
        return sample(args, path, device)
    loader, test_loader, classes = utils.load_data(args.dataset, args.data_dir, args.batch_size, device)

    vae = VAE(utils.X_SHAPE, args.z_dim, args.hidden_dim, n_classes=10 if args.conditional else 0).to(device)
    optimizer = torch.optim.Adam(vae.parameters(), lr=args.lr, fused=True)  # fused: one kernel for all its updates
    # Adam's tiny averages can turn into subnormal floats, which some CPUs compute slowly: they are flushed to 0.
    torch.set_flush_denormal(True)
    # p(z) = N(0, I); validate_args=False, as in VAE.encode: a check at each log_prob would wait for a GPU.
    z_prior = dist.Normal(torch.zeros(args.z_dim, device=device), 1.0, validate_args=False)
    x, y = next(iter(test_loader))  # the pictures' fixed inputs: the first 32 test images, the first of each class
    first = [y.tolist().index(c) for c in range(10)]
    fixed = (x[:32], y[:32]), (x[first], y[first]), utils.fixed_noise(args.z_dim, args.conditional, device)

    records = {"metrics": [], "batch_losses": [], "reconstructions": []}  # what the final pictures need of each epoch
    if args.resume:  # go on as if never stopped; a new --lr or --batch-size applies from the next epoch
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        vae.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict({**checkpoint["optimizer"], "param_groups": optimizer.state_dict()["param_groups"]})
        records = checkpoint["records"]
        for rng, state in zip(utils.rngs(device), checkpoint["rng"]):  # the CPU's, and a GPU's where it has one
            rng.set_rng_state(state)
    os.makedirs(args.out_dir, exist_ok=True)

    for epoch in range(len(records["metrics"]) + 1, args.epochs + 1):
        start = time.perf_counter()
        losses = train(vae, optimizer, tqdm(loader, f"epoch {epoch}/{args.epochs}", leave=False, disable=None), z_prior)
        test = evaluate(vae, test_loader, z_prior)
        records["reconstructions"].append(draw_epoch(vae, fixed, epoch, args.out_dir))
        records["batch_losses"].append(losses.cpu())
        records["metrics"].append({"epoch": epoch, "train_neg_elbo": losses.mean().item(), **test,
                                   "seconds": time.perf_counter() - start})
        torch.save({"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "records": records,
                    "config": vars(args), "rng": [rng.get_rng_state() for rng in utils.rngs(device)]}, path + ".tmp")
        os.replace(path + ".tmp", path)  # in one step: a stop at any moment leaves the last finished epoch's checkpoint
        utils.write_metrics(os.path.join(args.out_dir, "metrics.csv"), records["metrics"])
        print(EPOCH_LINE.format(**records["metrics"][-1], epochs=args.epochs), flush=True)

    draw_final_pictures(vae, records, fixed, test_loader, classes, args)
    print(f"pictures, metrics.csv and vae.pt in {os.path.abspath(args.out_dir)}")
    if args.iw_samples:
        neg_log_likelihood = estimate_neg_log_likelihood(vae, test_loader, z_prior, args.iw_samples)
        print(f"final test -log p(x{'|y' if args.conditional else ''}) <= {neg_log_likelihood:.1f} nats per image "
              f"(importance-weighted bound, K = {args.iw_samples} samples per image)")


if __name__ == "__main__":
    main()
