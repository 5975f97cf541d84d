"""Training-batch augmentation: small random shifts and rotations, flips, random erasing.

Drawn from torch's global generator, which the run's seed fixes and ``last.pt`` saves, so an
augmented run is as reproducible and resumable as any other.
"""

from __future__ import annotations

import numpy as np
import torch


def augment_batch(
    images: torch.Tensor, *, shift: float = 2 / 28, degrees: float = 10.0, flip: bool = False, erase: float = 0.0
) -> torch.Tensor:
    """Random small shifts and rotations of a training batch, one draw per image.

    The same transform as torchvision's ``RandomAffine(degrees, translate=(shift, shift))``, done
    for the whole batch in one ``affine_grid``/``grid_sample`` call: RandomAffine draws one
    transform per call, and calling it per image costs 0.4 ms an image, as much as the training
    step itself. Edge pixels are repeated into the uncovered border (the background for digits and
    MNIST). ``flip`` adds random horizontal flips (CIFAR-10, garments; never for digits), and
    ``erase`` is the probability of random erasing (Zhong et al. 2020; torchvision's
    ``RandomErasing`` defaults: 2-33% of the image, aspect 0.3-3.3, set to 0). Draws come from
    torch's global generator, which the seed fixes and checkpoints save; erasing draws nothing when
    off, so runs from before it replay exactly.

    Args:
        images: float [N, C, H, W].
        shift: largest shift, as a fraction of the side (2 px at 28x28).
        degrees: largest rotation either way.
    """
    import torch.nn.functional as F

    n = images.shape[0]
    angle = (torch.rand(n) * 2 - 1) * (degrees * np.pi / 180)
    move = (torch.rand(n, 2) * 2 - 1) * (2 * shift)  # grid coordinates span [-1, 1]
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, move[:, 0]], 1), torch.stack([sin, cos, move[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if flip:
        mirror = torch.rand(n) < 0.5
        out[mirror] = out[mirror].flip(-1)
    if erase > 0:
        out = _erase(out, erase)
    return out


def _erase(images: torch.Tensor, p: float, scale=(0.02, 0.33), ratio=(0.3, 1 / 0.3)) -> torch.Tensor:
    """Random erasing for the whole batch: one rectangle per chosen image, set to 0."""
    n, _, h, w = images.shape
    area = torch.empty(n).uniform_(*scale) * h * w
    aspect = torch.exp(torch.empty(n).uniform_(np.log(ratio[0]), np.log(ratio[1])))
    eh = torch.sqrt(area * aspect).round().clamp(1, h)
    ew = torch.sqrt(area / aspect).round().clamp(1, w)
    top = (torch.rand(n) * (h - eh + 1)).floor()
    left = (torch.rand(n) * (w - ew + 1)).floor()
    chosen = torch.rand(n) < p
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    box = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
           & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)) & chosen.view(n, 1, 1))
    return images.masked_fill(box.unsqueeze(1), 0.0)
