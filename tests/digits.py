"""Three small digit classifiers, and the quality report of generated digits that the slow tests judge by.

The report of a batch of generated images (10,000 in the tests) is the mean of the classifiers' reports:
- shares: the fraction the classifier assigns to each digit (all near 10%: no mode collapse);
- inception_score: exp E[KL(p(y|x) || p(y))], high when each image is clearly one digit and all
  digits occur (at most 10; the real test digits score about 9.7);
- confidence: the classifier's mean probability of its chosen digit (real digits: about 0.99);
- frechet_distance: between Gaussians fitted to the classifier's penultimate-layer features of the
  generated images and of the 10,000 real test images (0 for identical statistics; lower is better).
"""
import torch
import torch.nn.functional as F
from torch import nn

import utils


JUDGES = 3  # classifiers, trained alike from seeds 0 to 2
EPOCHS = 2  # seeds 0-4 after one epoch: 98.7-99.0% right, IS of the real digits 9.59; after two: 99.1-99.3%, 9.75


def train_digit_classifiers(data_dir):
    """JUDGES classifiers, trained alike but from different seeds (about 16 s each on 2 cores). Why several: a sample
    that is half one digit and half another (an 8 with an open loop) is read one way or the other by a classifier's
    seed; on one set of samples, five classifiers counted 6.5, 8.4, 9.1, 7.6 and 7.6% 8s. Their mean hangs on none."""
    loader, _, _ = utils.load_data("mnist", data_dir, 256, torch.device("cpu"))  # the images held in memory
    return [train_digit_classifier(loader, seed) for seed in range(JUDGES)]


def train_digit_classifier(loader, seed):
    """A small convolutional network, over 99% right on MNIST's test set after EPOCHS epochs: the recipe of
    tuomaso/train_mnist_fast (99.04% after one epoch, the mean of 30 seeds), a ninth of the multiply-adds of the judges
    before it (1.2 M an image, against 11.1 M), batches of 256, and a one-cycle learning rate for Adam."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 24, 5), nn.ReLU(), nn.MaxPool2d(2),  # 28 -> 24 -> 12 pixels
                        nn.Conv2d(24, 32, 3), nn.ReLU(), nn.MaxPool2d(2),  # 12 -> 10 -> 5
                        nn.Flatten(), nn.Linear(32 * 5 * 5, 256), nn.ReLU(), nn.Linear(256, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01, betas=(0.7, 0.9))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=EPOCHS * len(loader))
    for _ in range(EPOCHS):
        for x, y in loader:
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return net.eval()


@torch.no_grad()
def features_and_probabilities(net, images):
    """The penultimate layer's 256 features and the 10 class probabilities of each image in [0, 1]."""
    features = torch.cat([net[:-1](x) for x in images.float().split(1000)])
    return features.double(), F.softmax(net[-1](features), 1).double()


def frechet_distance(a, b):
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) between Gaussians fitted to two sets of features."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(s_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    # Tr (S_a S_b)^1/2 = Tr (S_a^1/2 S_b S_a^1/2)^1/2, whose matrix is symmetric.
    trace_root = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0).sqrt().sum()
    return ((mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * trace_root).item()


def quality_report(nets, samples, real_images):
    """The report above for `samples` (N, 1, 28, 28) in [0, 1]; `real_images` the same, of real digits."""
    reports = [report_of_one(net, samples, real_images) for net in nets]
    return {key: torch.tensor([report[key] for report in reports]).mean(0).tolist() for key in reports[0]}


def report_of_one(net, samples, real_images):
    features, p = features_and_probabilities(net, samples)
    real_features, _ = features_and_probabilities(net, real_images)
    p_y = p.mean(0)
    kl = (p * (p.clamp(min=1e-12).log() - p_y.clamp(min=1e-12).log())).sum(1)
    return {"shares": (torch.bincount(p.argmax(1), minlength=10) / len(p)).tolist(),
            "inception_score": kl.mean().exp().item(),
            "confidence": p.max(1).values.mean().item(),
            "frechet_distance": frechet_distance(features, real_features)}


def describe(report):
    """The report in one line."""
    shares = " ".join(f"{100 * s:.1f}" for s in report["shares"])
    return (f"digits 0-9 (%): {shares}; IS {report['inception_score']:.2f}; "
            f"confidence {report['confidence']:.3f}; FD {report['frechet_distance']:.1f}")
