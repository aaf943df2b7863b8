"""Rebuild ``facelm/headpose.py``'s generic 3D face (``FACE3D_68``) from MediaPipe Face Mesh.

    pip install mediapipe==0.10.21          # in a separate environment: not a facelm dependency
    python scripts/make_face3d.py examples/astronaut.jpg > face3d.txt

What it does, and why the result may ship under facelm's Apache-2.0 licence:

1. MediaPipe Face Mesh (``mediapipe.solutions.face_mesh``, model ``face_landmark.tflite``; Apache-2.0) predicts
   468 3D points on the photo and on its mirror image (``examples/astronaut.jpg``: NASA photo of Eileen Collins,
   public domain, shipped by scikit-image). Its ``z`` is a relative depth on the scale of ``x`` (image widths).
2. The 468 points become the 68 iBUG points through the correspondence of Peizhi Yan's ``mediapipe2dlib``
   (``MP468_TO_68`` in ``scripts/compare_tools.py``: one vertex or the mean of two per point).
3. The mirror-image run is mirrored back; the two runs and the mirror of their mean (aligned by a rigid 3D
   Procrustes fit) are averaged, so the face is exactly left-right symmetric.
4. The frame is turned so that the symmetry plane is ``x = 0`` (x to image right), ``y`` points from the eyes to
   the mouth (down) and ``z`` away from the camera (the nose tip nearest): OpenCV's camera axes, face looking at
   the camera. Units: millimetres, scaled so the outer eye corners (points 36, 45) are 90 mm apart (biocular
   width of adults, Farkas 1994); the origin is the midpoint of the two inner eye corners (39, 42).

Only the 68 averaged, symmetrised points are kept: a generic face shape (one subject, smiling; the jaw points
follow Face Mesh's contour, not the 300-W jaw), printed as a Python tuple.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

BIOCULAR_MM = 90.0


def _procrustes_rigid(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``b`` moved rigidly (rotation + translation) onto ``a``."""
    ca, cb = a.mean(0), b.mean(0)
    u, _, vt = np.linalg.svd((b - cb).T @ (a - ca))
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1, 1, d]) @ vt
    return (b - cb) @ r + ca


def face3d(image_path: str) -> np.ndarray:
    import cv2
    import mediapipe as mp

    from compare_tools import mp468_to_68
    from facelm.schemes import get_scheme

    perm = list(get_scheme("300w68").flip_perm)
    img = cv2.cvtColor(cv2.imread(image_path), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    runs = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as fm:
        for flip in (False, True):
            im = np.ascontiguousarray(img[:, ::-1]) if flip else img
            lm = fm.process(im).multi_face_landmarks[0].landmark
            p = mp468_to_68(np.array([[q.x * w, q.y * h, q.z * w] for q in lm]))
            if flip:
                p[:, 0] = (w - 1) - p[:, 0]
                p = p[perm]
            runs.append(p)
    a = (runs[0] + _procrustes_rigid(runs[0], runs[1])) / 2
    mirrored = a * [-1, 1, 1]
    s = (a + _procrustes_rigid(a, mirrored[perm])) / 2
    # frame: x across the symmetry plane, y from the eyes to the mouth, z = x cross y (away from the camera)
    x = np.mean([s[j] - s[i] for i, j in enumerate(perm) if i != j and s[j][0] > s[i][0]], axis=0)
    x /= np.linalg.norm(x)
    eyes, mouth = s[36:48].mean(0), s[48:60].mean(0)
    y = mouth - eyes
    y -= x * (y @ x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    p = (s - (s[39] + s[42]) / 2) @ np.stack([x, y, z]).T
    p *= BIOCULAR_MM / np.linalg.norm(p[36] - p[45])
    p = (p + (p[perm] * [-1, 1, 1])) / 2  # exact symmetry after the turn
    assert p[30, 2] < p[36:48, 2].min(), "the nose tip should be nearest the camera"
    return p


if __name__ == "__main__":
    pts = face3d(sys.argv[1] if len(sys.argv) > 1 else "examples/astronaut.jpg")
    rows = [f"({x:.1f}, {y:.1f}, {z:.1f})" for x, y, z in pts]
    print("FACE3D_68 = (\n" + "\n".join("    " + ", ".join(rows[i:i + 5]) + "," for i in range(0, 68, 5)) + "\n)")
