"""The heatmap family (Adaptive Wing, Wang et al., ICCV 2019; SMT-Net, Yang et al., CVPRW 2019) in one package:
``codec`` (targets, coordinate conversion, decoding), ``smt`` (SMT-Net's dynamic sigma and residual targets),
``losses`` (AWing, MSE, BICE, hinge residual) and ``objective`` (the training objective, used by ``facelm.train``).
The networks are ``facelm.models.hourglass``. This namespace holds the encoding and decoding functions.

Conventions and units
---------------------
- Points are ``(..., 2)`` float ``(x, y)``; batched landmark tensors are ``(N, L, 2)``.
- **Crop pixels** (``crop px``): pixels of the network's square input crop of size ``S`` (256 for the hourglass
  models), 0-based, pixel centres at integer positions (as everywhere in facelm).
- **Heatmap pixels** (``heatmap px``): pixels of the square ``H x H`` heatmap (64 for the hourglass models), also
  0-based with centres at integers. A heatmap pixel covers ``S / H`` crop pixels (the stride), so the two are
  related by ``crop_to_heatmap(p) = (p + 0.5) * H / S - 0.5`` and its inverse ``heatmap_to_crop``. For S = 256,
  H = 64 the first heatmap pixel (0) is centred on crop position 1.5, the centre of crop pixels 0..3.
- Heatmaps are ``(N, L, H, W)`` float tensors (``H == W`` in the models, but the functions take any ``H, W``);
  a pixel ``(x, y)`` is ``heatmap[n, l, y, x]``.
- All functions work on batches, on any device, in float32 (float64 inputs stay float64), and never loop in
  Python over pixels or landmarks.

Encoding targets: ``gaussian_heatmaps`` (one unnormalised Gaussian per landmark, peak 1 at the exact sub-pixel
point), ``boundary_heatmap`` (AWing's extra boundary channel), ``weighted_loss_map`` (AWing's Weighted Loss Map,
Eq. 4-5), ``sigma_schedule`` (SMT-Net's dynamic kernel radius, §3.2) and ``residual_targets`` (SMT-Net's
coordinate-residual target, Eq. 3).

Decoding: ``decode_heatmaps`` (argmax + quarter-pixel shift toward the higher neighbour, as in AWing and Newell et
al.; or an optional DARK-style sub-pixel refinement). It is ONNX-exportable (``torch.onnx.export(...,
opset_version=17, dynamo=False)``) and gives the same result in onnxruntime.

Example:
    >>> import torch
    >>> from facelm.heatmap import gaussian_heatmaps, decode_heatmaps, crop_to_heatmap, heatmap_to_crop
    >>> crop_pts = torch.tensor([[[100.3, 140.8]]])                 # (N=1, L=1, 2), 256 px crop
    >>> hm_pts = crop_to_heatmap(crop_pts, 256, 64)                 # heatmap px: (24.7, 34.825)
    >>> h = gaussian_heatmaps(hm_pts, 64, sigma=1.0)                # (1, 1, 64, 64), peak 1
    >>> decode_heatmaps(h)                                          # argmax (25, 35) + quarter shift
    tensor([[[24.7500, 34.7500]]])
    >>> [round(v, 3) for v in heatmap_to_crop(decode_heatmaps(h, refine=True), 256, 64)[0, 0].tolist()]
    [100.3, 140.8]
"""

from facelm.heatmap.codec import (
    REFINE_EPS as REFINE_EPS,
    REFINE_MAX_STEP as REFINE_MAX_STEP,
    boundary_heatmap as boundary_heatmap,
    crop_to_heatmap as crop_to_heatmap,
    decode_heatmaps as decode_heatmaps,
    gaussian_heatmaps as gaussian_heatmaps,
    heatmap_argmax as heatmap_argmax,
    heatmap_to_crop as heatmap_to_crop,
    weighted_loss_map as weighted_loss_map,
)
from facelm.heatmap.smt import (
    SIGMA_SCHEDULES as SIGMA_SCHEDULES,
    residual_targets as residual_targets,
    sigma_schedule as sigma_schedule,
)

__all__ = ["REFINE_EPS", "REFINE_MAX_STEP", "SIGMA_SCHEDULES", "boundary_heatmap", "crop_to_heatmap",
           "decode_heatmaps", "gaussian_heatmaps", "heatmap_argmax", "heatmap_to_crop", "residual_targets",
           "sigma_schedule", "weighted_loss_map"]
