"""Old home of the crop convention and the augmentation: ``facelm.crops`` and ``facelm.augment`` now.

Kept as a thin re-export for code that imports the old names.
"""

from facelm.augment import AugmentConfig as AugmentConfig, render_batch as render_batch
from facelm.crops import (
    CROP_EXPAND as CROP_EXPAND,
    face_frames as face_frames,
    frame_matrices as frame_matrices,
    upright_frames as upright_frames,
)

__all__ = ["AugmentConfig", "CROP_EXPAND", "frame_matrices", "render_batch", "upright_frames", "face_frames"]
