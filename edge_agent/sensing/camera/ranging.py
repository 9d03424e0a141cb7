"""Where a person the camera sees stands: metres on the floor in front of the screen.

The fused presence (``sensing/fusion.py``) tells a shopper who walked up from one who was
already standing there by each track's foot position and by whether it came in at the edge of
the camera's view. The camera sits on the screen, so a pinhole model needs one number from
the camera's datasheet, its horizontal field of view: the focal length in pixels is
``(width / 2) / tan(hfov / 2)``, and a box of known real size gives the range.

- a face box (Haar or YuNet) is about ``face_width_m`` wide (0.16 m: an adult's bizygomatic
  breadth is 0.13-0.15 m and both detectors' boxes take in a little more);
- a moving body's box is about ``body_height_m`` tall (1.7 m), when its top and bottom are
  inside the region (a body cut by the frame's edge is wider than it is tall times 0.3 and
  is ranged by its width instead, a person being about 0.45 m across the shoulders).

The foot is ``(x, z)``: metres to the side (right positive, as the camera sees it) and metres
out from the screen. Range from size is rough (a child's face, a person half turned away): the
bench models a 0.25 m error per frame; what the association needs is "far, near, at the edge",
not centimetres. A person is *at the edge* of the view when their box touches the left or
right side of the screen's region (walking in or out sideways: near the screen, yet not
standing there) or when they are as far as the detector reaches (``reach_m``: coming or going).

Pure: no OpenCV, no numpy; boxes in, metres out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Box = tuple[int, int, int, int]  # x, y, w, h in pixels of the screen's region

FACE_WIDTH_M = 0.16
BODY_HEIGHT_M = 1.7
SHOULDERS_M = 0.45
MAX_RANGE_M = 30.0  # a detection this far is noise for a screen's audience


@dataclass(frozen=True, slots=True)
class Placement:
    foot: tuple[float, float]  # (x, z) metres from the screen
    at_edge: bool  # touching the region's left or right side: coming or going sideways


def focal_px(hfov_deg: float, frame_w: int) -> float:
    """The pinhole focal length in pixels of a camera ``frame_w`` wide seeing ``hfov_deg``."""
    if not 20.0 <= hfov_deg < 180.0:
        raise ValueError(f"hfov_deg {hfov_deg} is not a camera's field of view (20-180)")
    return (frame_w / 2) / math.tan(math.radians(hfov_deg) / 2)


class Ranger:
    """Boxes from one screen's region to floor positions, for a camera of ``hfov_deg`` whose
    frame is ``frame_w`` pixels wide, the region starting ``region_x0`` pixels from its left
    and ``region_w`` wide."""

    def __init__(
        self,
        hfov_deg: float,
        *,
        frame_w: int,
        region_x0: int = 0,
        region_w: int | None = None,
        face_width_m: float = FACE_WIDTH_M,
        body_height_m: float = BODY_HEIGHT_M,
        edge_px: int = 4,
        reach_m: float | None = None,
    ) -> None:
        if frame_w <= 0 or face_width_m <= 0 or body_height_m <= 0:
            raise ValueError("frame width, face width and body height must be > 0")
        self.focal_px = focal_px(hfov_deg, frame_w)
        self.cx = frame_w / 2 - region_x0  # the optical axis, in the region's pixels
        self.region_w = frame_w - region_x0 if region_w is None else region_w
        self.face_width_m = face_width_m
        self.body_height_m = body_height_m
        self.edge_px = edge_px
        self.reach_m = reach_m

    def place(self, box: Box, face: bool, region_h: int | None = None) -> Placement:
        x, y, w, h = box
        w, h = max(w, 1), max(h, 1)
        f = self.focal_px
        if face:
            z = f * self.face_width_m / w
        elif region_h is not None and (y <= 0 or y + h >= region_h) and w > 0.3 * h:
            z = f * SHOULDERS_M / w  # a body cut at the top or bottom: its height lies
        else:
            z = f * self.body_height_m / h
        z = min(z, MAX_RANGE_M)
        side = (x + w / 2 - self.cx) * z / f
        edge = x <= self.edge_px or x + w >= self.region_w - self.edge_px
        if self.reach_m is not None and z >= 0.85 * self.reach_m:
            edge = True
        return Placement((round(side, 2), round(z, 2)), edge)
