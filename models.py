"""The networks of the slides: the VAE (encoder, decoder), and the GAN's generator G and discriminator D.

Every network is a stack of fully connected layers on flattened 28x28 images, exactly as on
the slides, so that each attribute here can be found there by name.

With n_classes > 0 each network is its class-conditional version (the conditional VAE of Sohn
et al., 2015, and the conditional GAN of Mirza & Osindero, 2014): the class label y, as a
one-hot vector, is appended to the input of the encoder, the decoder, G and D. With the
default n_classes=0, y is ignored and the networks are the slides' own.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal

# Softplus of a very negative number underflows to exactly 0 in float32, and a Normal with
# scale 0 has an infinite KL; this floor keeps every scale strictly positive.
MIN_SCALE = 1e-6


def with_label(input, y, n_classes):
    """`input` (N, features) with the one-hot vector of each class index in `y` (N,) appended.

    Unchanged when n_classes is 0: an unconditional network ignores y.
    """
    if not n_classes:
        return input
    return torch.cat([input, F.one_hot(y, n_classes).to(input.dtype)], 1)


class VAE(nn.Module):
    def __init__(self, x_shape, z_dim, hidden_dim=500, n_classes=0):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.x_dim = math.prod(self.x_shape)
        self.z_dim = z_dim
        self.n_classes = n_classes

        self.encoder = nn.Sequential(
            nn.Linear(self.x_dim + n_classes, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
        )
        self.mu_net = nn.Sequential(
            nn.Linear(hidden_dim, z_dim),
        )
        self.sigma_net = nn.Sequential(
            nn.Linear(hidden_dim, z_dim),
            nn.Softplus(),
        )
        self.decoder = nn.Sequential(
            nn.Linear(z_dim + n_classes, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, self.x_dim),
            nn.Sigmoid(),
        )

    def encode(self, x, y=None):
        """q(z|x) (q(z|x, y) when conditional): a diagonal Gaussian over z for each image in the batch."""
        h = self.encoder(with_label(x.view(len(x), self.x_dim), y, self.n_classes))
        # The scale is positive by construction, so the Normal's argument check (a GPU sync
        # on every batch) is skipped.
        return Normal(self.mu_net(h), self.sigma_net(h) + MIN_SCALE, validate_args=False)

    def decode(self, z, y=None):
        """p(x|z) (p(x|z, y) when conditional): the Bernoulli mean of every pixel, as an image batch in [0, 1]."""
        return self.decoder(with_label(z, y, self.n_classes)).view(len(z), *self.x_shape)


class G(nn.Module):
    """The generator: noise z of size z_dim (and, when conditional, a class y) to an image batch in [0, 1]."""

    def __init__(self, z_dim, x_shape, hidden_dim=500, n_classes=0):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.x_dim = math.prod(self.x_shape)
        self.z_dim = z_dim
        self.n_classes = n_classes

        self.net = nn.Sequential(
            nn.Linear(z_dim + n_classes, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, self.x_dim),
            nn.Sigmoid(),
        )

    def forward(self, input, y=None):
        return self.net(with_label(input, y, self.n_classes)).view(len(input), *self.x_shape)


class D(nn.Module):
    """The discriminator: an image batch (and, when conditional, its classes y) to the probability that
    each image is real (a real image of its class y), shape (N,)."""

    def __init__(self, x_shape, hidden_dim=500, n_classes=0):
        super().__init__()
        self.x_dim = math.prod(x_shape)
        self.n_classes = n_classes

        self.net = nn.Sequential(
            nn.Linear(self.x_dim + n_classes, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 1),
            nn.Sigmoid(),
        )

    def forward(self, input, y=None):
        return self.net(with_label(input.view(len(input), self.x_dim), y, self.n_classes)).squeeze(-1)

    def logit(self, input, y=None):
        """log(D / (1 - D)): D's output before its final sigmoid, which saturates where D is sure."""
        return self.net[:-1](with_label(input.view(len(input), self.x_dim), y, self.n_classes)).squeeze(-1)
