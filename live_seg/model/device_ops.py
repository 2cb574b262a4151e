"""Pre- and post-processing as plain tensor code, for the device the model runs on.

On CUDA these keep a frame on the GPU between its upload and a single uint8 download: resize
and normalisation before the model; palette lookup, nearest upsample and the 0.6/0.4 blend
after it. They are ordinary torch operations, so the CPU test suite runs them on CPU tensors
and compares them with the OpenCV/numpy path (``cv2.resize``, :class:`live_seg.render.renderer.Renderer`)
that runs on the CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_bilinear_u8(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize uint8 images to ``size`` (a side, or ``(height, width)``), bilinear with half-pixel centres
    (as ``cv2.INTER_LINEAR``).

    Args:
        images: ``(N, H, W, 3)`` uint8, any channel order (kept).
        size: the output side, or ``(height, width)``.

    Returns:
        ``(N, h, w, 3)`` uint8 on the same device. Computed in float and rounded once;
        OpenCV works in fixed point, so the two differ by at most one grey level.
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[1:3]) == hw:
        return images
    x = images.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def normalise(
    images: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    memory_format: torch.memory_format = torch.contiguous_format,
    dtype: torch.dtype | None = None,
    rgb: bool = True,
    scale: float = 1 / 255,
) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 BGR → ``(N, 3, H, W)`` model input, ``(x * scale - mean) / std``.

    With the defaults, the same float operations as torchvision's ``ToTensor`` then ``Normalize``, in
    float32; the result is cast to ``dtype`` (fp16 / bf16 weights) when given.

    Args:
        images: uint8 BGR batch on any device.
        mean, std: ``(1, 3, 1, 1)`` float32 on the same device, in the network's channel order.
        memory_format: ``torch.channels_last`` for the fast paths.
        dtype: the model's input dtype, ``None`` for float32.
        rgb: the network takes RGB (the channels are flipped); ``False``: BGR as decoded.
        scale: pixel values are multiplied by it first (``1/255``: [0, 1]).
    """
    x = images.permute(0, 3, 1, 2)
    if rgb:
        x = x.flip(1)  # NCHW BGR -> RGB
    x = x.to(torch.float32, memory_format=memory_format)
    x = (x.div_(255) if scale == 1 / 255 else x.mul_(scale)).sub_(mean).div_(std)
    return x if dtype is None else x.to(dtype)


def nearest_indices(src: int, dst: int, device: torch.device | str) -> torch.Tensor:
    """For a nearest resize from ``src`` to ``dst`` positions, the source index of each output
    position, picked as ``cv2.INTER_NEAREST`` picks it: ``floor(i * src / dst)``."""
    pos = torch.arange(dst, device=device, dtype=torch.float64).mul_(src / dst).floor_()
    return pos.long().clamp_(max=src - 1)


def overlay(frame: torch.Tensor, mask: torch.Tensor, lut: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """Blend a coloured class mask over a frame, on the frame's device.

    Args:
        frame: ``(H, W, 3)`` uint8 BGR.
        mask: ``(h, w)`` uint8 class ids, any size (nearest-resized to the frame, as the CPU path).
        lut: ``(C, 3)`` uint8 BGR palette on the same device.
        alpha: weight of the colour (0.4 gives the 60/40 blend), or a ``(C,)`` float tensor of
            weights per class (0 leaves a class's pixels untouched).

    Returns:
        ``(H, W, 3)`` uint8 BGR, ``round(frame * (1 - a) + colour * a)``: with a scalar weight the
        same pixels as ``cv2.addWeighted`` on the CPU.
    """
    h, w = frame.shape[:2]
    ids = mask.long()
    rows = nearest_indices(mask.shape[0], h, frame.device)
    cols = nearest_indices(mask.shape[1], w, frame.device)
    ids = ids.index_select(0, rows).index_select(1, cols)  # class ids at the frame's size
    colour = lut[ids].float()
    if isinstance(alpha, torch.Tensor):
        a = alpha.to(frame.device, torch.float32)[ids].unsqueeze(-1)
        out = frame.float() * (1.0 - a) + colour * a
    else:
        out = frame.float().mul_(1.0 - alpha).add_(colour.mul_(alpha))
    return out.round_().clamp_(0, 255).to(torch.uint8)
