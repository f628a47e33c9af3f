"""The networks of the slides: the VAE (encoder, decoder), and the GAN's generator G and discriminator D.

Every network is a stack of fully connected layers on flattened 28x28 images, exactly as on
the slides, so that each attribute here can be found there by name.
"""
import math

from torch import nn
from torch.distributions import Normal

# Softplus of a very negative number underflows to exactly 0 in float32, and a Normal with
# scale 0 has an infinite KL; this floor keeps every scale strictly positive.
MIN_SCALE = 1e-6


class VAE(nn.Module):
    def __init__(self, x_shape, z_dim, hidden_dim=500):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.x_dim = math.prod(self.x_shape)
        self.z_dim = z_dim

        self.encoder = nn.Sequential(
            nn.Linear(self.x_dim, hidden_dim),
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
            nn.Linear(z_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, self.x_dim),
            nn.Sigmoid(),
        )

    def encode(self, x):
        """q(z|x): a diagonal Gaussian over z for each image in the batch."""
        h = self.encoder(x.view(len(x), self.x_dim))
        # The scale is positive by construction, so the Normal's argument check (a GPU sync
        # on every batch) is skipped.
        return Normal(self.mu_net(h), self.sigma_net(h) + MIN_SCALE, validate_args=False)

    def decode(self, z):
        """p(x|z): the Bernoulli mean of every pixel, as an image batch in [0, 1]."""
        return self.decoder(z).view(len(z), *self.x_shape)


class G(nn.Module):
    """The generator: noise z of size z_dim to an image batch in [0, 1]."""

    def __init__(self, z_dim, x_shape, hidden_dim=500):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.x_dim = math.prod(self.x_shape)
        self.z_dim = z_dim

        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, self.x_dim),
            nn.Sigmoid(),
        )

    def forward(self, input):
        return self.net(input).view(len(input), *self.x_shape)


class D(nn.Module):
    """The discriminator: an image batch to the probability that each image is real, shape (N,)."""

    def __init__(self, x_shape, hidden_dim=500):
        super().__init__()
        self.x_dim = math.prod(x_shape)

        self.net = nn.Sequential(
            nn.Linear(self.x_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 1),
            nn.Sigmoid(),
        )

    def forward(self, input):
        return self.net(input.view(len(input), self.x_dim)).squeeze(-1)
