"""Head pose (yaw, pitch, roll in degrees) from 68 iBUG/300-W landmarks: ``cv2.solvePnP`` with a generic 3D face.

**The 3D face** (:data:`FACE3D_68`, millimetres): 68 points of MediaPipe Face Mesh's 3D output (Apache-2.0 model)
on the public-domain ``examples/astronaut.jpg`` and its mirror image, mapped to the 68 iBUG points, made exactly
left-right symmetric and turned to face the camera; ``scripts/make_face3d.py`` rebuilds it and says how. Axes are
OpenCV's camera axes for a face looking into the camera: ``x`` to image right, ``y`` down, ``z`` away from the
camera; the origin is between the inner eye corners; the outer eye corners are 90 mm apart (the adult biocular
width). Head pose uses :data:`POSE_POINTS`: brows, nose, eyes and outer mouth (the jaw points of a 2D labelling
follow the visible outline of the cheek, which slides over the face as it turns, and the inner mouth moves with
speech).

**The camera**: pinhole, focal length ``max(width, height)`` pixels (a field of view of about 53 degrees on the
longer side), principal point at the image centre, no distortion. Faces far from the image centre get a
perspective correction from it; an unknown true focal length changes yaw and pitch by a few degrees at most for
faces of ordinary size (a face seen from further away is nearly orthographic).

**Angles**: the face's rotation ``R`` (model to camera) is ``Rz(roll) @ Ry(-yaw) @ Rx(-pitch)`` (pitch applied
first, roll last, about the camera's axis), so

* ``yaw`` > 0: the face turned towards the image right (its nose points right; the subject looks to their own
  left), in (-90, 90);
* ``pitch`` > 0: the face tilted up (chin up, nose points up in the image), in (-90, 90);
* ``roll`` > 0: the face turned clockwise on screen (the image-right eye lower), in (-180, 180]: the same sign
  convention as predict's ``angle`` (the eye line), and an image rotated in its plane changes ``roll`` by the
  same angle and leaves ``yaw`` and ``pitch`` alone.

**Zero pitch.** The generic face as built looks straight at the camera when its eye-to-mouth line is parallel to
the image plane; faces labelled frontal by people then came out at a pitch of +11.6 degrees (median of 300 MTFL
"frontal" faces of the training identities, ``scripts/headpose_check.py --split train --labels 3``), partly because
Face Mesh's nose tip is not quite 300-W's. :data:`MODEL_3D` is the generic face turned by :data:`PITCH_ZERO` about
its x axis, so that such faces have pitch 0.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["FACE3D_68", "MODEL_3D", "PITCH_ZERO", "POSE_POINTS", "camera_matrix", "head_pose", "head_poses",
           "pose_axes", "rotation_matrix"]

#: generic 3D face, 68 iBUG points, millimetres (see the module docstring; ``scripts/make_face3d.py``)
FACE3D_68 = (
    (-67.1, -2.6, 52.7), (-66.5, 9.1, 59.4), (-65.8, 21.6, 62.3), (-63.4, 39.1, 61.7), (-57.6, 56.7, 56.1),
    (-47.9, 73.2, 44.1), (-38.9, 82.5, 37.4), (-23.0, 96.3, 25.2), (0.0, 102.7, 19.2), (23.0, 96.3, 25.2),
    (38.9, 82.5, 37.4), (47.9, 73.2, 44.1), (57.6, 56.7, 56.1), (63.4, 39.1, 61.7), (65.8, 21.6, 62.3),
    (66.5, 9.1, 59.4), (67.1, -2.6, 52.7), (-55.6, -15.1, 3.2), (-50.0, -19.5, -5.4), (-41.0, -21.6, -12.3),
    (-29.0, -20.6, -17.9), (-14.9, -18.7, -20.4), (14.9, -18.7, -20.4), (29.0, -20.6, -17.9), (41.0, -21.6, -12.3),
    (50.0, -19.5, -5.4), (55.6, -15.1, 3.2), (0.0, 1.1, -19.1), (0.0, 16.1, -26.8), (0.0, 27.1, -33.7),
    (0.0, 35.8, -34.8), (-14.4, 39.1, -12.5), (-8.5, 43.3, -13.5), (0.0, 44.3, -15.0), (8.5, 43.3, -13.5),
    (14.4, 39.1, -12.5), (-45.0, -2.6, 4.8), (-38.7, -5.9, -2.2), (-28.0, -6.3, -3.9), (-17.2, 0.0, 0.0),
    (-25.5, 1.2, -1.8), (-35.8, 0.9, -0.2), (17.2, 0.0, 0.0), (28.0, -6.3, -3.9), (38.7, -5.9, -2.2),
    (45.0, -2.6, 4.8), (35.8, 0.9, -0.2), (25.5, 1.2, -1.8), (-32.5, 52.5, 13.3), (-19.3, 52.0, -6.2),
    (-9.7, 52.4, -10.4), (0.0, 53.6, -10.8), (9.7, 52.4, -10.4), (19.3, 52.0, -6.2), (32.5, 52.5, 13.3),
    (24.0, 64.3, 6.7), (9.5, 73.5, -0.7), (0.0, 74.7, -1.5), (-9.5, 73.5, -0.7), (-24.0, 64.3, 6.7),
    (-28.2, 53.4, 11.8), (-8.1, 55.9, -4.3), (0.0, 56.6, -5.3), (8.1, 55.9, -4.3), (28.2, 53.4, 11.8),
    (8.1, 66.1, 0.1), (0.0, 66.9, -1.0), (-8.1, 66.1, 0.1),
)

#: the points :func:`head_pose` fits: brows 17-26, nose 27-35, eyes 36-47, outer mouth 48-59
POSE_POINTS = tuple(range(17, 60))
_POSE_IDX = np.array(POSE_POINTS)

#: degrees: the pitch of human-labelled frontal faces measured with :data:`FACE3D_68` (module docstring)
PITCH_ZERO = 11.6


def camera_matrix(width: int, height: int) -> np.ndarray:
    """The pinhole camera of the module docstring: focal ``max(width, height)``, centre ``((w-1)/2, (h-1)/2)``."""
    f = float(max(width, height))
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``R = Rz(roll) @ Ry(-yaw) @ Rx(-pitch)`` (degrees): the face's rotation for these angles."""
    a, b, c = (math.radians(v) for v in (-yaw, -pitch, roll))
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


#: the 3D points the pose is fitted to: :data:`FACE3D_68` turned by :data:`PITCH_ZERO`
MODEL_3D = np.asarray(FACE3D_68, dtype=np.float64) @ rotation_matrix(0.0, PITCH_ZERO, 0.0).T
MODEL_3D.setflags(write=False)
_MODEL = MODEL_3D


def _angles(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) of a rotation ``R = Rz(roll) Ry(-yaw) Rx(-pitch)`` (ZYX Euler angles)."""
    beta = math.asin(max(-1.0, min(1.0, -r[2, 0])))
    alpha = math.atan2(r[2, 1], r[2, 2])
    gamma = math.atan2(r[1, 0], r[0, 0])
    return -math.degrees(beta), -math.degrees(alpha), math.degrees(gamma)


def _solve(points: np.ndarray, cam: np.ndarray, idx: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
    import cv2

    obj = np.ascontiguousarray(_MODEL[idx])
    img = np.ascontiguousarray(points[idx], dtype=np.float64)
    if np.ptp(img, axis=0).max() < 1e-3 * cam[0, 0]:  # all points (nearly) on one spot: no pose
        return None
    for flags in (cv2.SOLVEPNP_SQPNP, cv2.SOLVEPNP_EPNP):  # SQPnP: the global optimum; EPnP if it refuses
        try:
            ok, rvec, tvec = cv2.solvePnP(obj, img, cam, None, flags=flags)
        except cv2.error:
            continue
        if ok and np.isfinite(rvec).all() and np.isfinite(tvec).all():
            if flags == cv2.SOLVEPNP_EPNP:
                rvec, tvec = cv2.solvePnPRefineLM(obj, img, cam, None, rvec, tvec)
            break
    else:
        return None
    if not (np.isfinite(rvec).all() and tvec[2, 0] > 0):  # behind the camera: no pose
        return None
    return cv2.Rodrigues(rvec)[0], tvec[:, 0]


def head_pose(landmarks: np.ndarray, width: int, height: int) -> dict[str, float] | None:
    """``{"yaw", "pitch", "roll"}`` in degrees (module docstring) of one face's ``(68, 2)`` image-pixel landmarks
    in an image of ``width`` x ``height``; None when the points are not finite or the fit fails."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"head pose needs (68, 2) landmarks of the 300w68 scheme, got {pts.shape}")
    idx = _POSE_IDX[np.isfinite(pts[_POSE_IDX]).all(1)]
    if len(idx) < 6:
        return None
    found = _solve(pts, camera_matrix(width, height), idx)
    if found is None:
        return None
    yaw, pitch, roll = _angles(found[0])
    return {"yaw": yaw, "pitch": pitch, "roll": roll}


def head_poses(landmarks: np.ndarray, width: int, height: int) -> list[dict[str, float] | None]:
    """:func:`head_pose` of each face of ``(N, 68, 2)`` landmarks."""
    return [head_pose(p, width, height) for p in np.asarray(landmarks, dtype=np.float64).reshape(-1, 68, 2)]


def pose_axes(landmarks: np.ndarray, pose: dict[str, float], width: int, height: int,
              length: float = 50.0) -> np.ndarray:
    """Image points ``(4, 2)`` of the face's axes for drawing: origin (the nose tip), then the ends of ``length``
    mm along x (image right of the face), y (down the face) and -z (out of the face, where the nose points).
    The face's distance comes from fitting the generic face again with ``pose`` fixed (translation only)."""
    import cv2

    pts = np.asarray(landmarks, dtype=np.float64)
    cam = camera_matrix(width, height)
    r = rotation_matrix(pose["yaw"], pose["pitch"], pose["roll"])
    idx = _POSE_IDX[np.isfinite(pts[_POSE_IDX]).all(1)]
    t = _translation(pts[idx], _MODEL[idx] @ r.T, cam)
    nose = _MODEL[30]
    ends = np.array([nose, nose + [length, 0, 0], nose + [0, length, 0], nose - [0, 0, length]])
    img, _ = cv2.projectPoints(ends @ r.T + t, np.zeros(3), np.zeros(3), cam, None)
    return img.reshape(4, 2)


def _translation(img: np.ndarray, rotated: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """Least-squares translation ``t`` that projects the rotated 3D points ``rotated`` onto ``img`` (linear in t:
    ``(u - cx) (Z + tz) = f (X + tx)`` and the same for v)."""
    f, cx, cy = cam[0, 0], cam[0, 2], cam[1, 2]
    u, v = img[:, 0] - cx, img[:, 1] - cy
    x, y, z = rotated.T
    a = np.concatenate([np.column_stack([np.full_like(u, f), np.zeros_like(u), -u]),
                        np.column_stack([np.zeros_like(v), np.full_like(v, f), -v])])
    b = np.concatenate([u * z - f * x, v * z - f * y])
    return np.linalg.lstsq(a, b, rcond=None)[0]
