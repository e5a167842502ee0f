"""Ex-post density estimation for a VAE's latent space (vae.py --prior gmm): a full-covariance Gaussian
mixture fitted by EM to the posterior means of the training images. data.py re-exports fit_gmm; why a
mixture and not N(0, I): docs/models.md. Imports only torch."""
import math

import torch

EM_STEPS = 100        # EM iterations (docs/BENCHMARKS.md: 18.5 s on 58,000 x 20 means, 2 threads)


@torch.inference_mode()
def fit_gmm(z, k, gen, steps=EM_STEPS, ridge=1e-4):
    """Ex-post density estimation (Ghosh et al. 2020, section 4): a k-component, full-covariance Gaussian
    mixture fitted to the posterior means z [N, d] by EM (Bishop 2006, section 9.2.2). N(0, I) is where
    the KL term pushes the encoded data, not where a briefly trained VAE has put it; the mixture is. The
    means start at k random points, each covariance at z's; the ridge keeps them positive definite.
    Returns (weights [k], means [k, d], Cholesky factors of the covariances [k, d, d])."""
    n, d = z.shape
    mean = z[torch.randperm(n, generator=gen, device=gen.device)[:k].to(z.device)]
    eye = ridge * torch.eye(d, dtype=z.dtype, device=z.device)
    chol = torch.linalg.cholesky(torch.cov(z.T) + eye).expand(k, d, d)
    log_w = torch.full((k,), -math.log(k), dtype=z.dtype, device=z.device)
    zz = (z[:, :, None] * z[:, None, :]).reshape(n, d * d)      # z z^T per point: both steps are then matmuls
    for _ in range(steps):
        # E step: responsibilities r [N, k] = softmax over j of log w_j + log N(z | mean_j, cov_j), with
        # the Mahalanobis term (z - m)^T P (z - m) = <z z^T, P> - 2 z^T P m + m^T P m, P the precision
        prec = torch.cholesky_inverse(chol)
        pm = (prec @ mean[:, :, None])[..., 0]
        maha = zz @ prec.reshape(k, d * d).T - 2 * z @ pm.T + (pm * mean).sum(1)
        log_det = 2 * torch.diagonal(chol, dim1=1, dim2=2).log().sum(1)
        r = torch.softmax(log_w - 0.5 * maha - 0.5 * log_det, dim=1)
        # M step: weights, means and covariances (E[z z^T] - m m^T) weighted by the responsibilities
        n_k = r.sum(0) + 1e-12
        log_w, mean = (n_k / n).log(), (r.T @ z) / n_k[:, None]
        cov = (r.T @ zz).reshape(k, d, d) / n_k[:, None, None] - mean[:, :, None] * mean[:, None, :]
        chol = torch.linalg.cholesky((cov + cov.mT) / 2 + eye)
    return log_w.exp(), mean, chol


def sample_gmm(prior, n, gen):
    """n latent points [n, d] (float32) from the mixture prior = fit_gmm's (weights, means, Cholesky
    factors): a component j ~ w, then z = mean_j + L_j eps, eps ~ N(0, I)."""
    w, mean, chol = prior
    j = torch.multinomial(w, n, replacement=True, generator=gen)
    eps = torch.randn(n, mean.shape[1], 1, generator=gen, device=gen.device, dtype=mean.dtype)
    return (mean[j] + (chol[j] @ eps)[..., 0]).float()
