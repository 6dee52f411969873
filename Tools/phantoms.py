#!/usr/bin/env python3
"""Synthetic head CT studies in the RSNA 2019 layout, with hemorrhage labels.

    python3 Tools/phantoms.py --out DIR --studies N --seed S
        [--slices-min 24 --slices-max 40] [--size 512] [--prevalence 0.14]
        [--workers K] [--quirk-fraction 0.1] [--no-write]

writes

* ``DIR/<StudyInstanceUID>/<SOPInstanceUID>.dcm``: one axial CT slice per file;
* ``DIR/labels.csv``: the layout of the challenge's ``stage_2_train.csv``
  (``CSV_LABELS``):
  header ``ID,Label``, then six rows per slice, ``ID_<SOPInstanceUID>_<label>,0|1``,
  in the order of that file (epidural, intraparenchymal, intraventricular,
  subarachnoid, subdural, any; ``any`` is the OR of the five subtypes);
* ``DIR/studies.csv``: ``StudyInstanceUID,SOPInstanceUID,InstanceNumber,z``
  (z = ImagePositionPatient[2] in mm), one row per slice, for study-level work.

The output is a pure function of the arguments other than ``--workers`` (on one
machine and set of library versions: NumPy and OpenCV pick SIMD code by CPU, which
may round a transcendental function differently elsewhere): study
``i`` is drawn from ``numpy.random.default_rng([seed, i])`` (its UIDs,
``2.25.<128-bit integer>``, from ``[seed, i, 1]``, slice noise from
``[seed, i, 2, slice]``), each study is written by one worker, and the CSV
files are written in study order, so any number of workers gives the same bytes.

Anatomy (all in a head frame that is shifted, rotated and tilted per study)
--------------------------------------------------------------------------
* air -1000 HU; scalp -20..40 HU; skull 4.5-7.5 mm thick, varying around the
  head and thicker at the base, tables 1200-1600 HU around a 650-900 HU
  diploe, edges blurred over ~0.6 mm (partial volume);
* brain: an ellipsoid (half-axes ~60-70 x 75-88 mm, 58-68 mm above and a slower
  taper below the level of greatest width), white matter 25-31 HU, grey
  matter 5-9 HU brighter (cortical ribbon, sulcal banks, basal ganglia,
  thalami), low-frequency texture of a few HU;
* CSF 2-12 HU: a thin subarachnoid rim, ~40 sulci (width and depth vary, wider
  with "atrophy"), the interhemispheric and Sylvian fissures, the suprasellar,
  perimesencephalic and prepontine cisterns, and the ventricles (lateral
  bodies as bent "banana" shapes, frontal horns, atria, third, temporal horns
  and fourth ventricle, each with its own range of z);
* skull base: petrous ridges, clivus/sphenoid with its sinus, the anterior fossa
  floor with ethmoid/frontal air cells, all growing towards the lowest slices;
  vertex slices are small, tangential cuts through the skull give bone discs;
* in 70% of studies a head-rest arc (120-350 HU) and a table line (150-400 HU)
  behind the head;
* Gaussian noise, sd 3-8 HU per study, everywhere inside the image.

The head always lies inside the circular field of view (radius = half the image);
pixel spacing is 0.40-0.55 mm at 512 (field of view 205-280 mm, set by the head's
size). Slices are 5 mm apart in 60% of studies and 2.5-4.5 mm in the rest; when
the slice count would reach past the head the spacing shrinks to fit, so a
40-slice study runs from the skull base to the vertex at about 3.5 mm.

Hemorrhages (50-90 HU once noise is added: each lesion has one density drawn
from 60-85 HU, plus half the brain texture), each a 3-D object over
consecutive slices:

* epidural: a biconvex lens against the inner table (half-arc 14-32 mm,
  half-height 8-20 mm, up to 5-18 mm thick), mostly temporo-parietal;
* subdural: a crescent along the inner table (half-arc 35-110 mm, half-height
  20-60 mm, 3-13 mm thick, flat profile tapering at the ends), sometimes both
  sides;
* subarachnoid: blood filling the CSF spaces (sulci, fissures, cisterns, rim)
  inside 1-3 ellipsoids: basal cisterns, one Sylvian fissure or a convexity;
* intraventricular: dependent layering in the posterior horns (a horizontal
  fluid level, gravity along +y of the image) or a cast filling part of the
  ventricles;
* intraparenchymal: an irregular blob (radius 4-22 mm, lobulated boundary that
  changes with z) with an oedema rim of 15-25 HU; where it reaches a
  ventricle the blood there is intraventricular.

Several subtypes per study are common (patterns such as IPH+IVH, SDH+SAH,
IPH+SAH). A slice is labelled positive for a subtype iff at least
``round(20 * (size / 512) ** 2)`` pixels (at least 3) of that subtype are drawn
in it, after later lesions overwrite earlier ones; ``any`` is their OR.

Prevalence
----------
Aimed-for slice-level prevalence, the RSNA 2019 stage 2 training set's:
any 14%, epidural 0.4%, intraparenchymal 4.8%, intraventricular 3.5%,
subarachnoid 4.8%, subdural 6.3%. ``--prevalence P`` scales the probability
that a study bleeds by P / 0.14 (capped at every study bleeding, which gives
about half the slices positive); ``--prevalence 0`` makes every study negative.
The achieved per-label prevalence is printed at the end (and measured in
Tools/PHANTOMS.md).

Scanner quirks
--------------
A fraction ``--quirk-fraction`` of studies (all their slices) is stored oddly;
the storage and compression variants cycle with the study index so that any
four consecutive quirky studies show each of them:

* storage: ``rsna12`` (the RSNA 2019 defect as Tools/make_test_dicoms.py makes
  it: BitsStored 12, PixelRepresentation 0, RescaleIntercept 1, stored = HU
  clipped to [-1000, 3095] modulo 4096; the usual correction restores the HU),
  ``slope`` (RescaleSlope 0.5, intercept -1024, stored = 2 * (HU + 1024)),
  ``unsigned`` (PixelRepresentation 0, BitsStored 12 or 16, intercept -1024),
  or ``plain`` storage with padding;
* ``padding``: pixels outside the circular field of view stored as -2000 with
  PixelPaddingValue -2000 (always with ``plain``, half the time with ``slope``);
* compression: RLE Lossless (pydicom's encoder), JPEG-LS Lossless (pyjpegls)
  or none. JPEG Lossless SV1 is not written: pydicom has no encoder for it.

Other files: signed 16-bit, BitsStored 16, slope 1, intercept -1024, explicit
VR little endian, air (no padding) outside the field of view.

As a module: ``sample_study(seed, index, Options(...))`` draws a study,
``render_slice(study, k)`` returns its slice ``k`` (integer HU, the lesion label
map and a tissue-class map) and ``encode_slice`` the DICOM bytes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import math
import multiprocessing
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

cv2.setNumThreads(1)

# --------------------------------------------------------------------------
# Labels, classes, targets

LABELS = ("any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")
CSV_LABELS = LABELS[1:] + ("any",)  # row order of the challenge's stage_2_train.csv
EDH, IPH, IVH, SAH, SDH = 1, 2, 3, 4, 5  # label-map codes = index in LABELS
TARGET_PREVALENCE = {
    "any": 0.14, "epidural": 0.004, "intraparenchymal": 0.048,
    "intraventricular": 0.035, "subarachnoid": 0.048, "subdural": 0.063,
}  # fmt: skip

# Tissue classes of the class map (what a pixel is, before lesions).
AIR, SOFT, BONE, BRAIN, CSF, VENTRICLE = 0, 1, 2, 3, 4, 5

STORAGES = ("rsna12", "slope", "unsigned", "plain")
COMPRESSIONS = ("rle", "jpegls", None)
QUIRKS = ("padding", "rsna12", "slope", "unsigned", "rle", "jpegls")

# Probability that a study bleeds at the default prevalence, and the patterns
# (subtypes present) with their weights; calibrated so that the slice-level
# prevalence lands near TARGET_PREVALENCE (see Tools/PHANTOMS.md).
DEFAULT_PREVALENCE = TARGET_PREVALENCE["any"]
P_BLEED = 0.31
PATTERNS: tuple[tuple[tuple[int, ...], float], ...] = (
    ((SDH,), 0.19),
    ((SDH, SAH), 0.08),
    ((SAH,), 0.08),
    ((IPH,), 0.21),
    ((IPH, IVH), 0.15),
    ((IPH, SAH), 0.075),
    ((IPH, IVH, SAH), 0.065),
    ((IVH,), 0.09),
    ((SDH, SAH, IPH), 0.06),
    ((EDH,), 0.04),
    ((EDH, SDH), 0.016),
    ((EDH, SAH), 0.016),
)

MIN_PIXELS_512 = 20
AIR_HU = -1000.0
PADDING_STORED = -2000
PV_MM = 0.6  # width of the partial-volume edge of the head, skull and brain surfaces
ANGLE_BINS = 2048
IMPLEMENTATION_UID = "2.25.181749513212170873311093434329349021577"


def min_pixels(size: int) -> int:
    return max(3, int(round(MIN_PIXELS_512 * (size / 512) ** 2)))


@dataclass(frozen=True)
class Options:
    size: int = 512
    slices_min: int = 24
    slices_max: int = 40
    prevalence: float = DEFAULT_PREVALENCE
    quirk_fraction: float = 0.1
    # A study as a scanner sends it (scout, bone kernel, thin slices, reformats, dose SR, screen
    # capture) around the axial brain series, whose files and labels stay the same.
    multi_series: bool = False
    # Study, series and SOP identifiers of the RSNA 2019 form (ID_<10 hex digits>) instead of 2.25 UIDs.
    rsna_uids: bool = False


# --------------------------------------------------------------------------
# Study description (everything drawn from the study's generator)


@dataclass
class Structure:
    """An ellipse in the head frame (u to the patient's left, v anterior, mm),
    optionally bent (u' = side * u - bend * (v - v0)^2) and rotated, present for
    |z - zc| < zh with its length shrinking as sqrt(1 - ((z - zc) / zh)^2)."""

    u: float
    v: float
    a: float  # half-width (across)
    b: float  # half-length
    zc: float
    zh: float
    angle: float = 0.0
    bend: float = 0.0
    side: float = 1.0
    value: float = 0.0
    cls: int = CSF


@dataclass
class Lesion:
    kind: int
    zc: float
    zh: float
    hu: float
    p: dict = field(default_factory=dict)


@dataclass
class Study:
    seed: int
    index: int
    options: Options
    # geometry
    size: int
    spacing: float
    fov: float
    A: float
    B: float
    Cu: float
    Cl: float
    cx: float
    cy: float
    alpha: float
    tilt: float
    zs: np.ndarray  # head-frame z of each slice (mm)
    dz: float
    z_patient0: float
    ascending: bool
    # appearance
    wm: float
    gm: float
    csf: float
    scalp_hu: float
    skull_table_hu: float  # inner and outer tables
    diploe_hu: float
    base_bone_hu: float
    noise_sd: float
    grey_mm: float
    rim_mm: float
    sulcus_width: float
    sulci: int
    fissure_width: float
    scalp_mm: float
    shape_tab: np.ndarray
    thick_tab: np.ndarray
    p1_tab: np.ndarray
    p2_tab: np.ndarray
    p3_tab: np.ndarray
    sulcus_depth: np.ndarray
    texture: np.ndarray  # coarse (nz, 6, 6) and fine (nz, 24, 24) fields, see texture_at
    texture_fine: np.ndarray
    texture_z0: float
    structures: list[Structure]
    cisterns: list[tuple]  # ("star"|"ring"|"segment", params...)
    cradle: dict | None
    lesions: list[Lesion]
    pattern: tuple[int, ...]
    # storage
    storage: str
    padding: bool
    compression: str | None
    bits_stored: int
    windows: tuple[tuple[float, float], ...]
    # identifiers
    study_uid: str
    series_uid: str
    frame_uid: str
    sop_uids: list[str]
    study_date: str
    patient_sex: str
    patient_age: int

    @property
    def n(self) -> int:
        return len(self.zs)

    def quirks(self) -> list[str]:
        found = []
        if self.padding:
            found.append("padding")
        if self.storage != "plain":
            found.append(self.storage)
        if self.compression:
            found.append(self.compression)
        return found


def _uid(rng: np.random.Generator) -> str:
    return "2.25." + str(int.from_bytes(rng.bytes(16), "big") or 1)


def _fourier(rng: np.random.Generator, orders, amplitude: float) -> np.ndarray:
    theta = (np.arange(ANGLE_BINS) + 0.5) * (2 * math.pi / ANGLE_BINS)
    table = np.zeros(ANGLE_BINS)
    for k in orders:
        a, b = rng.normal(0.0, amplitude, 2)
        table += a * np.cos(k * theta) + b * np.sin(k * theta)
    return table.astype(np.float32)


def sample_study(seed: int, index: int, options: Options) -> Study:
    rng = np.random.default_rng([seed, index])
    uid_rng = np.random.default_rng([seed, index, 1])
    size = options.size
    U = rng.uniform

    # Geometry ------------------------------------------------------------
    A = U(60, 70)
    B = min(88.0, A * U(1.18, 1.32))
    Cu, Cl = U(58, 68), U(62, 72)
    t0 = U(4.5, 7.5)
    scalp = U(3, 6)
    alpha = math.radians(float(np.clip(rng.normal(0, 6), -15, 15)))
    tilt = U(-0.08, 0.08)
    offset = U(0, 8)
    direction = U(0, 2 * math.pi)
    cx, cy = offset * math.cos(direction), offset * math.sin(direction)
    extent = B * 1.06 + t0 * 1.9 + scalp + offset + abs(tilt) * 75 + 4
    fov = float(np.clip(U(2 * extent + 6, 2 * extent + 30), 2 * extent, 280))
    spacing = fov / size

    # Slices: from the skull base up, never past just above the vertex
    n = int(rng.integers(options.slices_min, options.slices_max + 1))
    dz = float(rng.choice([5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 4.5, 4.0, 3.0, 2.5]))
    z_bottom, z_top = -0.95 * Cl, Cu + 0.5 * t0  # the top slice still cuts the skull
    if n > 1 and (n - 1) * dz > z_top - z_bottom:
        dz = max(0.5, math.floor((z_top - z_bottom) / (n - 1) * 10) / 10)
    span = (n - 1) * dz
    z_start = round(z_bottom + U(0, max(0.0, z_top - z_bottom - span)), 1)
    zs = z_start + dz * np.arange(n)
    z_patient0 = round(float(U(-220, 60)), 1)
    ascending = bool(rng.random() < 0.5)

    # Appearance ----------------------------------------------------------
    atrophy = U(0.8, 1.6)
    wm = U(25, 31)
    gm = wm + U(5, 9)
    csf = U(2, 12)
    noise_sd = U(3, 8)
    shape_tab = _fourier(rng, (2, 3, 4), 0.02)
    thick_tab = (t0 * np.clip(1 + _fourier(rng, (1, 2, 3), 0.1), 0.6, 1.6)).astype(np.float32)
    sulci = int(rng.integers(34, 50))
    p1, p2, p3 = (_fourier(rng, range(1, 7), 0.55) for _ in range(3))
    sulcus_depth = rng.uniform(5, 18, sulci).astype(np.float32) * min(1.3, atrophy)
    z_lo, z_hi = zs[0] - 40, zs[-1] + 40
    nz = int(math.ceil((z_hi - z_lo) / 15)) + 2
    texture = rng.normal(0, 1, (nz, 6, 6)).astype(np.float32) * U(0.8, 1.8)
    nz_fine = int(math.ceil((z_hi - z_lo) / 6)) + 2
    texture_fine = rng.normal(0, 1, (nz_fine, 24, 24)).astype(np.float32) * U(0.5, 1.2)

    # Deep structures and CSF spaces --------------------------------------
    vf = atrophy * U(0.85, 1.15)
    j = lambda s: 1 + rng.normal(0, s)  # noqa: E731 - jitter
    structures: list[Structure] = []
    for side in (-1.0, 1.0):
        # basal ganglia and thalami (grey matter), drawn before the ventricles
        structures.append(Structure(side * 0.33 * A * j(0.05), 0.05 * B, 0.09 * A, 0.15 * B, -0.12 * Cl, 0.2 * Cl,
                                    angle=side * math.radians(15), value=gm - 1 - wm, cls=BRAIN))
        structures.append(Structure(side * 0.13 * A * j(0.05), -0.12 * B, 0.1 * A, 0.1 * B, -0.1 * Cl, 0.17 * Cl,
                                    value=gm - 2 - wm, cls=BRAIN))
    for side in (-1.0, 1.0):
        structures += [
            # lateral ventricle body: bent outwards at both ends
            Structure(side * U(5, 8) * math.sqrt(vf), -0.05 * B * j(0.2), 3.2 * vf * j(0.1), 0.28 * B * j(0.08),
                      0.17 * Cu, 0.33 * Cu, bend=0.012 * j(0.2), side=side, value=csf, cls=VENTRICLE),
            # frontal horn
            Structure(side * 6.5 * math.sqrt(vf), 0.2 * B * j(0.1), 3.0 * vf * j(0.1), 0.12 * B * j(0.1),
                      -0.05 * Cl, 0.24 * Cl, angle=-side * math.radians(25), value=csf, cls=VENTRICLE),
            # atrium / occipital horn
            Structure(side * 0.2 * A * j(0.1), -0.3 * B * j(0.08), 3.6 * vf * j(0.1), 0.13 * B * j(0.1),
                      -0.05 * Cl, 0.24 * Cl, angle=side * math.radians(30), value=csf, cls=VENTRICLE),
            # temporal horn
            Structure(side * 0.45 * A * j(0.05), 0.05 * B, 1.4 * vf, 0.07 * B, -0.42 * Cl, 0.1 * Cl,
                      angle=side * math.radians(20), value=csf, cls=VENTRICLE),
        ]
    structures += [
        Structure(0.0, 0.0, 1.2 * vf, 0.1 * B, -0.22 * Cl, 0.14 * Cl, value=csf, cls=VENTRICLE),  # third
        Structure(0.0, -0.38 * B, 3.0 * vf, 2.2 * vf, -0.7 * Cl, 0.12 * Cl, value=csf, cls=VENTRICLE),  # fourth
    ]
    cisterns = [
        ("star", 0.0, 0.12 * B, 8.5 * math.sqrt(vf), -0.4 * Cl, 0.1 * Cl),  # suprasellar
        ("ring", 0.0, -0.1 * B, 10.5, 10.5 + 2.2 * vf, -0.3 * Cl, 0.12 * Cl),  # perimesencephalic
        ("ellipse", 0.0, 0.04 * B, 7.0, 2.0 * vf, -0.56 * Cl, 0.1 * Cl),  # prepontine
    ]
    for side in (-1.0, 1.0):  # Sylvian fissures: from the lateral surface inwards and forwards
        cisterns.append(("segment", side * 1.05 * A, 0.0, side * 0.42 * A, 0.24 * B, 1.1 * vf, -0.18 * Cl, 0.24 * Cl))

    cradle = None
    if rng.random() < 0.7:
        cradle = {"gap": U(4, 12), "thick": U(2, 4), "hu": U(120, 350), "table_gap": U(8, 20),
                  "table_thick": U(3, 7), "table_hu": U(150, 400)}

    # Storage --------------------------------------------------------------
    # (a fixed number of draws, so that anatomy and lesions do not depend on --quirk-fraction)
    quirk_draw, padding_draw, bits_draw = rng.random(3)
    storage, padding, compression = "plain", False, None
    if quirk_draw < options.quirk_fraction:
        base = int(np.random.default_rng([seed, 0xC0FFEE, 3]).integers(0, 12))  # per seed
        storage = STORAGES[(index + base) % len(STORAGES)]
        compression = COMPRESSIONS[(index + index // len(STORAGES) + base) % len(COMPRESSIONS)]
        padding = storage == "plain" or (storage == "slope" and padding_draw < 0.5)
    bits_stored = 12 if storage == "rsna12" or (storage == "unsigned" and bits_draw < 0.5) else 16
    windows = [((40, 80),), ((40, 80), (400, 2000)), ((35, 80),), ((40, 120),)][int(rng.integers(0, 4))]

    study = Study(
        seed=seed, index=index, options=options, size=size, spacing=spacing, fov=fov, A=A, B=B, Cu=Cu, Cl=Cl,
        cx=cx, cy=cy, alpha=alpha, tilt=tilt, zs=zs, dz=dz, z_patient0=z_patient0, ascending=ascending,
        wm=wm, gm=gm, csf=csf, scalp_hu=U(-20, 40), skull_table_hu=0.0, diploe_hu=U(650, 900),
        base_bone_hu=U(900, 1500), noise_sd=noise_sd, grey_mm=U(2.5, 3.5), rim_mm=U(0.3, 1.0) * atrophy,
        sulcus_width=U(1.0, 1.6) * atrophy, sulci=sulci, fissure_width=U(1.2, 2.5) * atrophy, scalp_mm=scalp,
        shape_tab=shape_tab, thick_tab=thick_tab, p1_tab=p1, p2_tab=p2, p3_tab=p3, sulcus_depth=sulcus_depth,
        texture=texture, texture_fine=texture_fine, texture_z0=z_lo, structures=structures, cisterns=cisterns,
        cradle=cradle, lesions=[], pattern=(), storage=storage, padding=padding, compression=compression,
        bits_stored=bits_stored, windows=windows,
        study_uid=_uid(uid_rng), series_uid=_uid(uid_rng), frame_uid=_uid(uid_rng),
        sop_uids=[_uid(uid_rng) for _ in range(n)],
        study_date=f"{int(rng.integers(2015, 2025))}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
        patient_sex=str(rng.choice(["M", "F"])), patient_age=int(rng.integers(18, 95)),
    )
    study.skull_table_hu = U(1200, 1600)

    # Hemorrhages ---------------------------------------------------------
    p_bleed = min(1.0, P_BLEED * max(0.0, options.prevalence) / DEFAULT_PREVALENCE)
    if rng.random() < p_bleed:
        weights = np.array([w for _, w in PATTERNS])
        study.pattern = PATTERNS[int(rng.choice(len(PATTERNS), p=weights / weights.sum()))][0]
        for kind in study.pattern:
            study.lesions += _sample_lesions(rng, study, kind)
    return study


def _z_in(rng, study: Study, lo: float, hi: float) -> float | None:
    """A lesion centre level inside both the anatomical range and the slices."""
    lo, hi = max(lo, study.zs[0] - study.dz / 2), min(hi, study.zs[-1] + study.dz / 2)
    return float(rng.uniform(lo, hi)) if hi > lo else None


def _sample_lesions(rng, study: Study, kind: int) -> list[Lesion]:
    U = rng.uniform
    A, B, Cu, Cl = study.A, study.B, study.Cu, study.Cl
    side = 0.0 if rng.random() < 0.5 else math.pi  # theta 0 = patient's left, pi = right
    out: list[Lesion] = []
    if kind == EDH:
        z = _z_in(rng, study, -0.45 * Cl, 0.6 * Cu)
        if z is not None:
            out.append(Lesion(EDH, z, U(8, 20), U(62, 85), {
                "theta": side + rng.normal(0, 0.45), "arc": U(14, 32), "thick": U(5, 18)}))
    elif kind == SDH:
        for _ in range(1 + int(rng.random() < 0.2)):
            z = _z_in(rng, study, -0.4 * Cl, 0.75 * Cu)
            if z is not None:
                out.append(Lesion(SDH, z, U(20, 60), U(62, 82), {
                    "theta": side + rng.normal(0, 0.5), "arc": U(35, 110), "thick": U(3, 13),
                    "flat": U(2, 4)}))
            side = math.pi - side
    elif kind == SAH:
        for _ in range(int(rng.choice([1, 1, 2, 3]))):
            mode = rng.choice(["basal", "sylvian", "convexity"], p=[0.35, 0.3, 0.35])
            if mode == "basal":
                centre, radii, zr = (0.0, 0.05 * B), (U(25, 45), U(30, 50)), (-0.5 * Cl, -0.15 * Cl)
            elif mode == "sylvian":
                s = 1.0 if rng.random() < 0.5 else -1.0
                centre, radii, zr = (s * 0.7 * A, 0.12 * B), (U(18, 30), U(20, 35)), (-0.35 * Cl, 0.1 * Cu)
            else:
                t = U(-math.pi, math.pi)
                centre = (0.85 * A * math.cos(t), 0.85 * B * math.sin(t))
                radii, zr = (U(18, 40), U(18, 40)), (-0.2 * Cl, 0.8 * Cu)
            z = _z_in(rng, study, *zr)
            if z is not None:
                out.append(Lesion(SAH, z, U(12, 35), U(60, 80), {"u": centre[0], "v": centre[1],
                                                                "ru": radii[0], "rv": radii[1]}))
    elif kind == IVH:
        if rng.random() < 0.6:  # dependent layering in the posterior horns
            z = _z_in(rng, study, -0.2 * Cl, 0.3 * Cu)
            if z is not None:
                out.append(Lesion(IVH, z, U(8, 25), U(60, 78), {"mode": "layer", "level": U(0.1, 0.28) * B}))
        else:  # a cast filling part of the ventricles
            z = _z_in(rng, study, -0.35 * Cl, 0.4 * Cu)
            if z is not None:
                out.append(Lesion(IVH, z, U(10, 30), U(60, 80), {
                    "mode": "cast", "u": U(-0.2, 0.2) * A, "v": U(-0.3, 0.2) * B, "r": U(12, 30)}))
    elif kind == IPH:
        for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
            z = _z_in(rng, study, -0.5 * Cl, 0.7 * Cu)
            if z is None:
                continue
            R = U(4, 22)
            # stay inside the brain: centre within 60% of the cross-section at z
            s = _brain_scale(study, z)
            angle, radius = U(-math.pi, math.pi), math.sqrt(U(0, 1)) * 0.6
            u0, v0 = radius * A * s * math.cos(angle), radius * B * s * math.sin(angle)
            out.append(Lesion(IPH, z, R * U(0.7, 1.2), U(62, 85), {
                "u": u0, "v": v0, "r": R, "rim": U(0, 5) * min(1.0, R / 10), "oedema": U(15, 25),
                "harmonics": [(k, U(0.05, 0.18), U(0, 2 * math.pi), U(-0.15, 0.15)) for k in (2, 3, 4, 5)]}))
    return out


def _brain_scale(study: Study, z: float) -> float:
    c = study.Cu if z >= 0 else 2.1 * study.Cl
    return math.sqrt(max(0.0, 1 - (z / c) ** 2))


# --------------------------------------------------------------------------
# Rendering


@dataclass
class SliceImage:
    hu: np.ndarray  # int16 HU (air -1000, padding region -1000 as well)
    labels: np.ndarray  # uint8 label map: 0 or EDH..SDH
    classes: np.ndarray  # uint8 tissue classes before lesions
    outside_fov: np.ndarray  # bool
    counts: np.ndarray  # pixels per label code 0..5
    positive: np.ndarray  # 6 ints in LABELS order


class _Frame:
    """Per-slice coordinates: head-frame u, v for every pixel and the inverse map."""

    def __init__(self, study: Study, z: float):
        n, ps = study.size, study.spacing
        self.ps = ps
        self.cx = study.cx
        self.cy = study.cy + study.tilt * z
        self.ca, self.sa = math.cos(study.alpha), math.sin(study.alpha)
        axis = ((np.arange(n, dtype=np.float32) - (n - 1) / 2) * ps).astype(np.float32)
        self.x, self.y = axis - np.float32(self.cx), axis - np.float32(self.cy)  # image x (cols), y (rows)
        # u = x cos + (-y) sin ; v = -x sin + (-y) cos
        self.U = self.x[None, :] * np.float32(self.ca) - self.y[:, None] * np.float32(self.sa)
        self.V = -self.x[None, :] * np.float32(self.sa) - self.y[:, None] * np.float32(self.ca)
        self.n = n

    def box(self, u: float, v: float, radius: float) -> tuple[slice, slice] | None:
        x = u * self.ca - v * self.sa + self.cx
        y = -(u * self.sa + v * self.ca) + self.cy
        c = (x / self.ps) + (self.n - 1) / 2
        r = (y / self.ps) + (self.n - 1) / 2
        h = radius / self.ps + 2
        r0, r1 = max(0, int(r - h)), min(self.n, int(r + h) + 1)
        c0, c1 = max(0, int(c - h)), min(self.n, int(c + h) + 1)
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1)


def _structure_mask(st: Structure, frame: _Frame, z: float) -> tuple[tuple[slice, slice], np.ndarray] | None:
    dzr = (z - st.zc) / st.zh
    if abs(dzr) >= 1:
        return None
    f = math.sqrt(1 - dzr * dzr)
    a, b = st.a * math.sqrt(f), st.b * f
    if a < 0.3 or b < 0.3:
        return None
    bend_extent = st.bend * b * b
    box = frame.box(st.u, st.v, max(a, b) + bend_extent)
    if box is None:
        return None
    du = frame.U[box] - np.float32(st.u)
    dv = frame.V[box] - np.float32(st.v)
    if st.angle:
        c, s = math.cos(st.angle), math.sin(st.angle)
        du, dv = du * np.float32(c) + dv * np.float32(s), -du * np.float32(s) + dv * np.float32(c)
    if st.bend:
        du = du + np.float32(st.side * st.bend) * dv * dv
    return box, (du / np.float32(a)) ** 2 + (dv / np.float32(b)) ** 2 <= 1


def _texture_at(field_: np.ndarray, z0: float, step: float, z: float, n: int) -> np.ndarray:
    position = (z - z0) / step
    i = int(np.clip(math.floor(position), 0, len(field_) - 2))
    w = float(np.clip(position - i, 0, 1))
    plane = (1 - w) * field_[i] + w * field_[i + 1]
    return cv2.resize(plane, (n, n), interpolation=cv2.INTER_CUBIC)


def render_slice(study: Study, k: int) -> SliceImage:
    z = float(study.zs[k])
    n = study.size
    fr = _Frame(study, z)
    U, V = fr.U, fr.V
    f32 = np.float32

    r2sq = U * U + V * V
    r2 = np.sqrt(r2sq)
    theta = cv2.phase(U, V)  # [0, 2 pi), 0 = patient's left, pi / 2 = anterior (fast; error < 2e-4 rad)
    idx = (theta * f32(ANGLE_BINS / (2 * math.pi))).astype(np.int32)
    np.minimum(idx, ANGLE_BINS - 1, out=idx)
    take = lambda table: np.take(table, idx)  # noqa: E731

    # Signed depth below the brain surface along the ray from the centre (mm)
    C = study.Cu if z >= 0 else 2.1 * study.Cl
    shape = 1 + take(study.shape_tab)
    rho2 = (U * U * f32(1 / study.A**2) + V * V * f32(1 / study.B**2)) / (shape * shape)
    rho = np.sqrt(rho2 + f32((z / C) ** 2))
    r3 = np.sqrt(r2sq + f32(z * z) + f32(1e-6))
    E = r3 / np.maximum(rho, f32(1e-6)) - r3
    beta = float(np.clip((-z / study.Cl - 0.35) / 0.55, 0, 1))  # skull-base weight
    t = take(study.thick_tab) * f32(1 + 0.6 * beta)

    # Brain tissue -------------------------------------------------------------
    tex = _texture_at(study.texture, study.texture_z0, 15, z, n)
    tex += _texture_at(study.texture_fine, study.texture_z0, 6, z, n)
    brain = tex + f32(study.wm)
    cz, sz = math.cos(z / 23.0), math.sin(z / 23.0)
    K = study.sulci
    phi = f32(K) * theta + take(study.p1_tab) * f32(cz) + take(study.p2_tab) * f32(sz)
    # in-plane depth below the cross-section's surface: sulci run inwards from the edge of the slice
    scale = _brain_scale(study, z)
    E2 = r2 * (f32(max(scale, 0.05)) / np.sqrt(np.maximum(rho2, f32(1e-8))) - f32(1))
    phi += f32(0.8) * np.sin(E2 * f32(0.25) + take(study.p3_tab))
    m = np.floor(phi * f32(1 / (2 * math.pi)) + f32(0.5))
    dist = np.abs(phi - m * f32(2 * math.pi)) * r2 * f32(1 / K)
    # sulci shorten towards the vertex, where the cross-section is small
    depth = np.take(study.sulcus_depth, m.astype(np.int32), mode="wrap") * f32(np.clip(1.4 * scale, 0.25, 1))
    grey = (E < f32(study.rim_mm + study.grey_mm)) | ((dist < f32(study.sulcus_width / 2 + study.grey_mm))
                                                       & (E2 < depth + f32(study.grey_mm)))
    brain += grey * f32(study.gm - study.wm)
    csf = (E < f32(study.rim_mm)) | ((dist < f32(study.sulcus_width / 2)) & (E2 < depth))
    # interhemispheric fissure (anterior and posterior parts, the whole length high up)
    if z > -0.35 * study.Cl:
        high = z > 0.5 * study.Cu  # above the ventricles and the corpus callosum
        front = -study.B if high else 0.25 * study.B
        back = study.B if high else -0.38 * study.B
        csf |= (np.abs(U) < f32(study.fissure_width / 2)) & ((V > f32(front)) | (V < f32(back)))
    vent = np.zeros((n, n), dtype=bool)
    base_bone = np.zeros((n, n), dtype=bool)
    base_air = np.zeros((n, n), dtype=bool)
    for st in study.structures:
        hit = _structure_mask(st, fr, z)
        if hit is None:
            continue
        box, mask = hit
        if st.cls == BRAIN:
            brain[box][mask] = tex[box][mask] + f32(study.wm + st.value)
        else:
            vent[box] |= mask
    for cistern in study.cisterns:
        _draw_cistern(cistern, fr, z, csf)
    if beta > 0.1:
        _skull_base(study, fr, z, beta, base_bone, base_air)
    csf &= ~vent
    brain = np.where(csf | vent, tex * f32(0.3) + f32(study.csf), brain)

    # Compose head -------------------------------------------------------------
    inv_pv = f32(1 / PV_MM)
    w_head = np.clip((E + t + f32(study.scalp_mm)) * inv_pv + f32(0.5), 0, 1)
    w_skull = np.clip((E + t) * inv_pv + f32(0.5), 0, 1)
    w_brain = np.clip(E * inv_pv + f32(0.5), 0, 1)
    p = np.clip(-E / t, 0, 1) * f32(2) - f32(1)
    bone = f32(study.diploe_hu) + f32(study.skull_table_hu - study.diploe_hu) * p * p
    img = f32(AIR_HU) + w_head * f32(study.scalp_hu - AIR_HU)
    img += w_skull * (bone - f32(study.scalp_hu))
    img += w_brain * (brain - bone)

    # nested surfaces: brain inside skull inside head, so the sum is AIR, SOFT, BONE or BRAIN
    inside = w_brain > 0.5
    classes = (w_head > 0.5).view(np.uint8) + (w_skull > 0.5).view(np.uint8) + inside.view(np.uint8)
    classes += (inside & csf).view(np.uint8) + (inside & vent).view(np.uint8) * np.uint8(2)  # CSF 4, VENTRICLE 5
    if beta > 0.1:
        bb = base_bone & inside
        img[bb] = f32(study.base_bone_hu) + tex[bb] * f32(20)
        classes[bb] = BONE
        ba = base_air & inside
        img[ba] = f32(AIR_HU)
        classes[ba] = AIR

    if study.cradle is not None:
        _cradle(study, fr, img, classes, E, t)

    # Hemorrhages -------------------------------------------------------------
    labels = np.zeros((n, n), dtype=np.uint8)
    intracranial = classes >= BRAIN
    for lesion in sorted(study.lesions, key=lambda l: _DRAW_ORDER[l.kind]):
        if abs(z - lesion.zc) >= lesion.zh:
            continue
        _draw_lesion(lesion, study, fr, z, img, labels, classes, intracranial, E, theta, r2, tex)

    # Noise and field of view ---------------------------------------------------
    noise_rng = np.random.default_rng([study.seed, study.index, 2, k])
    img += noise_rng.standard_normal((n, n), dtype=np.float32) * f32(study.noise_sd)
    outside = _outside_fov(n)  # nothing is drawn there (the field of view holds the head)
    labels[outside] = 0
    classes[outside] = AIR
    hu = np.clip(np.rint(img), -1024, 3071).astype(np.int16)

    counts = np.bincount(labels.ravel(), minlength=6)
    positive = np.zeros(6, dtype=np.int8)
    positive[1:] = counts[1:] >= min_pixels(n)
    positive[0] = positive[1:].max()
    return SliceImage(hu, labels, classes, outside, counts, positive)


_DRAW_ORDER = {SAH: 0, IVH: 1, IPH: 2, SDH: 3, EDH: 4}
_FOV_CACHE: dict[int, np.ndarray] = {}


def _outside_fov(n: int) -> np.ndarray:
    if n not in _FOV_CACHE:
        axis = np.arange(n) - (n - 1) / 2
        _FOV_CACHE[n] = axis[:, None] ** 2 + axis[None, :] ** 2 > (n / 2) ** 2
    return _FOV_CACHE[n]


def _draw_cistern(c: tuple, fr: _Frame, z: float, csf: np.ndarray) -> None:
    kind = c[0]
    zc, zh = c[-2], c[-1]
    dzr = (z - zc) / zh
    if abs(dzr) >= 1:
        return
    f = math.sqrt(1 - dzr * dzr)
    f32 = np.float32
    if kind == "segment":
        _, u0, v0, u1, v1, half_width, _, _ = c
        um, vm = (u0 + u1) / 2, (v0 + v1) / 2
        length = math.hypot(u1 - u0, v1 - v0)
        box = fr.box(um, vm, length / 2 + half_width)
        if box is None:
            return
        du, dv = fr.U[box] - f32(u0), fr.V[box] - f32(v0)
        eu, ev = (u1 - u0) / length, (v1 - v0) / length
        s = np.clip(du * f32(eu) + dv * f32(ev), 0, f32(length * f))
        d2 = (du - s * f32(eu)) ** 2 + (dv - s * f32(ev)) ** 2
        csf[box] |= d2 < f32(half_width**2)
        return
    u0, v0 = c[1], c[2]
    if kind == "star":
        radius = c[3] * math.sqrt(f)
        box = fr.box(u0, v0, radius * 1.3)
        if box is None:
            return
        du, dv = fr.U[box] - f32(u0), fr.V[box] - f32(v0)
        ang = np.arctan2(dv, du)
        csf[box] |= np.hypot(du, dv) < f32(radius) * (f32(1) + f32(0.3) * np.cos(f32(5) * ang - f32(math.pi / 2)))
    elif kind == "ring":
        inner, outer = c[3], c[4]
        box = fr.box(u0, v0, outer)
        if box is None:
            return
        d = np.hypot(fr.U[box] - f32(u0), (fr.V[box] - f32(v0)) * f32(1.2))
        csf[box] |= (d > f32(inner)) & (d < f32(outer))
    elif kind == "ellipse":
        a, b = c[3], c[4] * math.sqrt(f)
        box = fr.box(u0, v0, max(a, b))
        if box is None:
            return
        csf[box] |= ((fr.U[box] - f32(u0)) / f32(a)) ** 2 + ((fr.V[box] - f32(v0)) / f32(b)) ** 2 < 1


def _skull_base(study: Study, fr: _Frame, z: float, beta: float, bone: np.ndarray, air: np.ndarray) -> None:
    A, B = study.A, study.B
    f32 = np.float32
    s = _brain_scale(study, z)
    # petrous ridges: from posterolateral to anteromedial
    for side in (-1.0, 1.0):
        u0, v0, u1, v1 = side * 0.95 * A * s, -0.34 * B * s, side * 0.16 * A, 0.02 * B
        half = 1.5 + 6 * beta
        um, vm, length = (u0 + u1) / 2, (v0 + v1) / 2, math.hypot(u1 - u0, v1 - v0)
        box = fr.box(um, vm, length / 2 + half)
        if box is None:
            continue
        du, dv = fr.U[box] - f32(u0), fr.V[box] - f32(v0)
        eu, ev = (u1 - u0) / length, (v1 - v0) / length
        sp = np.clip(du * f32(eu) + dv * f32(ev), 0, f32(length))
        bone[box] |= (du - sp * f32(eu)) ** 2 + (dv - sp * f32(ev)) ** 2 < f32(half * half)
    # clivus and sphenoid body, with the sphenoid sinus inside when low enough
    box = fr.box(0.0, 0.12 * B, 0.3 * B)
    if box is not None:
        du, dv = fr.U[box], fr.V[box] - f32(0.12 * B)
        bone[box] |= (du / f32(0.06 * A + 0.1 * A * beta)) ** 2 + (dv / f32(0.05 * B + 0.15 * B * beta)) ** 2 < 1
        if beta > 0.45:
            air[box] |= (du / f32(0.09 * A * beta)) ** 2 + ((dv - f32(0.04 * B)) / f32(0.08 * B * beta)) ** 2 < 1
    # anterior fossa floor / orbital roofs with ethmoid and frontal air cells
    limit = B * s * (1.0 - 0.45 * beta)
    front = fr.V > f32(limit) + f32(0.25 * limit / (A * A)) * fr.U * fr.U  # curved orbital roofs
    bone |= front
    if 0.15 < beta < 0.85:
        box = fr.box(0.0, 0.92 * B * s, 0.3 * A)
        if box is not None:
            du, dv = fr.U[box], fr.V[box] - f32(0.92 * B * s)
            air[box] |= (du / f32(0.22 * A)) ** 2 + (dv / f32(0.06 * B)) ** 2 < 1
    air &= bone | front


def _cradle(study: Study, fr: _Frame, img: np.ndarray, classes: np.ndarray, E: np.ndarray, t: np.ndarray) -> None:
    """A head-rest arc behind (below, in the image) the head and a table line."""
    c = study.cradle
    f32 = np.float32
    outer = -(E + t + f32(study.scalp_mm))  # mm outside the head surface
    behind = fr.y[:, None] > f32(0.2 * study.B)
    arc = behind & (outer > f32(c["gap"])) & (outer < f32(c["gap"] + c["thick"])) & (classes == AIR)
    img[arc] = f32(c["hu"])
    classes[arc] = SOFT
    head_bottom = float(fr.y[np.any(classes[:, :] != AIR, axis=1)].max()) if classes.any() else 0.0
    y0 = head_bottom + c["table_gap"]
    rows = (fr.y > f32(y0)) & (fr.y < f32(y0 + c["table_thick"]))
    if rows.any():
        band = np.zeros_like(classes, dtype=bool)
        band[rows, :] = True
        band &= classes == AIR
        img[band] = f32(c["table_hu"])
        classes[band] = SOFT


def _draw_lesion(lesion: Lesion, study: Study, fr: _Frame, z: float, img, labels, classes, intracranial,
                 E, theta, r2, tex) -> None:
    f32 = np.float32
    p = lesion.p
    fz = 1 - ((z - lesion.zc) / lesion.zh) ** 2  # in (0, 1]
    hu = f32(lesion.hu)
    if lesion.kind in (EDH, SDH):
        thick_max = p["thick"]
        rows, cols = np.nonzero((E >= 0) & (E < f32(thick_max)) & intracranial)
        if rows.size == 0:
            return
        dth = np.angle(np.exp(1j * (theta[rows, cols].astype(np.float64) - p["theta"]))).astype(np.float32)
        q = (dth * r2[rows, cols] / f32(p["arc"])) ** 2
        if lesion.kind == EDH:
            thickness = f32(thick_max) * np.sqrt(np.clip(f32(fz) - q, 0, None))  # biconvex lens
        else:
            thickness = f32(thick_max * math.sqrt(fz) ** 0.5) * np.sqrt(np.clip(1 - q ** f32(p["flat"]), 0, None))
        keep = E[rows, cols] < thickness
        rows, cols = rows[keep], cols[keep]
        img[rows, cols] = hu + f32(0.5) * tex[rows, cols]
        labels[rows, cols] = lesion.kind
    elif lesion.kind == SAH:
        ru, rv = p["ru"] * math.sqrt(fz), p["rv"] * math.sqrt(fz)
        box = fr.box(p["u"], p["v"], max(ru, rv))
        if box is None:
            return
        inside = ((fr.U[box] - f32(p["u"])) / f32(ru)) ** 2 + ((fr.V[box] - f32(p["v"])) / f32(rv)) ** 2 < 1
        mask = inside & (classes[box] == CSF)
        img[box][mask] = hu + f32(0.5) * tex[box][mask]
        labels[box][mask] = SAH
    elif lesion.kind == IVH:
        vent = classes == VENTRICLE
        if p["mode"] == "layer":
            mask = vent & (fr.y[:, None] > f32(p["level"]))
        else:
            r = p["r"] * math.sqrt(fz)
            box = fr.box(p["u"], p["v"], r)
            if box is None:
                return
            mask = np.zeros_like(vent)
            mask[box] = vent[box] & (((fr.U[box] - f32(p["u"])) ** 2 + (fr.V[box] - f32(p["v"])) ** 2) < f32(r * r))
        img[mask] = hu + f32(0.5) * tex[mask]
        labels[mask] = IVH
    elif lesion.kind == IPH:
        radius = p["r"] * math.sqrt(fz)
        rim = p["rim"]
        box = fr.box(p["u"], p["v"], radius * 1.6 + rim)
        if box is None:
            return
        du, dv = fr.U[box] - f32(p["u"]), fr.V[box] - f32(p["v"])
        d = np.hypot(du, dv)
        ang = np.arctan2(dv, du)
        boundary = np.ones_like(d)
        for order, amp, phase, drift in p["harmonics"]:
            boundary += f32(amp) * np.cos(f32(order) * ang + f32(phase + drift * (z - lesion.zc)))
        boundary *= f32(radius)
        ic = intracranial[box]
        cls = classes[box]
        blood = (d < boundary) & ic
        oedema = (d < boundary + f32(rim)) & ~blood & (cls == BRAIN)
        sub_img, sub_lab = img[box], labels[box]
        sub_img[oedema] = f32(p["oedema"]) + tex[box][oedema]
        sub_img[blood] = hu + f32(0.5) * tex[box][blood]
        sub_lab[blood] = np.where(cls[blood] == VENTRICLE, IVH, IPH).astype(np.uint8)


# --------------------------------------------------------------------------
# DICOM


def _ds_str(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _base_dataset(study: Study, sop: str, sop_class: str, modality: str) -> Dataset:
    """The file meta and the patient, study and equipment attributes every file of the study shares."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "ICH_PHANTOM_1"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.StudyDate = study.study_date
    ds.SeriesDate = study.study_date
    ds.StudyTime = "120000"
    ds.AccessionNumber = f"SYN{study.seed % 100000:05d}{study.index:06d}"
    ds.Modality = modality
    ds.Manufacturer = "SYNTHETIC"
    ds.ManufacturerModelName = "ICH-PHANTOM"
    ds.InstitutionName = "Synthetic data, not for clinical use"
    ds.StudyDescription = "CT HEAD WO CONTRAST (SYNTHETIC)"
    ds.PatientName = f"PHANTOM^{study.index}"
    ds.PatientID = f"PHANTOM-{study.seed}-{study.index}"
    ds.PatientSex = study.patient_sex
    ds.PatientAge = f"{study.patient_age:03d}Y"
    ds.PatientIdentityRemoved = "YES"
    ds.BodyPartExamined = "HEAD"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study.study_uid
    ds.StudyID = str(study.index + 1)
    return ds


def _to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def encode_slice(study: Study, k: int, hu: np.ndarray) -> bytes:
    """The DICOM file of slice k holding these HU values."""
    n = study.size
    hu32 = hu.astype(np.int32)
    signed = study.storage in ("plain", "slope")
    slope, intercept = "1", "-1024"
    if study.storage == "plain":
        stored = hu32 + 1024
    elif study.storage == "slope":
        stored, slope = 2 * (hu32 + 1024), "0.5"
    elif study.storage == "unsigned":
        stored = np.clip(hu32 + 1024, 0, (1 << study.bits_stored) - 1)
    else:  # rsna12
        stored, intercept = np.mod(np.clip(hu32, -1000, 3095), 4096), "1"
    if study.padding:
        stored = stored.copy()
        stored[_outside_fov(n)] = PADDING_STORED
    words = stored.astype("<i2" if signed else "<u2")

    sop = study.sop_uids[k]
    ds = _base_dataset(study, sop, CTImageStorage, "CT")
    instance = k + 1 if study.ascending else study.n - k
    z_patient = study.z_patient0 + float(study.zs[k])
    corner = -(n - 1) / 2 * study.spacing
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SeriesDescription = "AXIAL BRAIN (SYNTHETIC)"
    if study.options.multi_series:
        ds.ConvolutionKernel = "STANDARD"
    ds.SliceThickness = _ds_str(study.dz)
    ds.KVP = "120"
    ds.SeriesInstanceUID = study.series_uid
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [_ds_str(corner), _ds_str(corner), _ds_str(z_patient)]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = study.frame_uid
    ds.SliceLocation = _ds_str(z_patient)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = n
    ds.Columns = n
    ds.PixelSpacing = [_ds_str(study.spacing), _ds_str(study.spacing)]
    ds.BitsAllocated = 16
    ds.BitsStored = study.bits_stored
    ds.HighBit = study.bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if study.padding:
        ds.PixelPaddingValue = PADDING_STORED
        ds["PixelPaddingValue"].VR = "SS"
    centres = [_ds_str(c) for c, _ in study.windows]
    widths = [_ds_str(w) for _, w in study.windows]
    ds.WindowCenter = centres if len(centres) > 1 else centres[0]
    ds.WindowWidth = widths if len(widths) > 1 else widths[0]
    ds.RescaleIntercept = intercept
    ds.RescaleSlope = slope
    ds.RescaleType = "HU"
    ds.PixelData = words.tobytes()
    ds["PixelData"].VR = "OW"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if study.compression == "rle":
            ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
        elif study.compression == "jpegls":
            ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls", generate_instance_uid=False)
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


# --------------------------------------------------------------------------
# The other series of a scanner's study (--multi-series)

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
XRAY_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
REFORMATTED = ["DERIVED", "SECONDARY", "REFORMATTED"]


@dataclass
class SeriesRow:
    """One series written, with the role and reason the default series rules should give it."""

    study_uid: str
    series_uid: str
    number: int
    kind: str
    instances: int
    role: str  # primary | triaged | skipped
    reason: str


def _ct_image(study: Study, hu: np.ndarray, *, sop: str, series: str, number: int, instance: int, image_type: list[str],
              description: str, kernel: str, thickness: float, position: list[float], orientation: list[float],
              spacing: tuple[float, float]) -> bytes:
    """A plain (uncompressed, signed, intercept -1024) CT image of any plane."""
    ds = _base_dataset(study, sop, CTImageStorage, "CT")
    ds.ImageType = image_type
    ds.SeriesDescription = description
    ds.ConvolutionKernel = kernel
    ds.SliceThickness = _ds_str(thickness)
    ds.SeriesInstanceUID = series
    ds.SeriesNumber = number
    ds.InstanceNumber = instance
    ds.FrameOfReferenceUID = study.frame_uid
    ds.ImagePositionPatient = [_ds_str(v) for v in position]
    ds.ImageOrientationPatient = [_ds_str(v) for v in orientation]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = hu.shape
    ds.PixelSpacing = [_ds_str(spacing[0]), _ds_str(spacing[1])]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = "40"
    ds.WindowWidth = "80"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.PixelData = (np.clip(np.rint(hu), -1024, 31743).astype(np.int32) + 1024).astype("<i2").tobytes()
    ds["PixelData"].VR = "OW"
    return _to_bytes(ds)


def _dose_report(study: Study, sop: str, series: str) -> bytes:
    """An X-Ray Radiation Dose SR as CT scanners send it: no pixel data."""
    ds = _base_dataset(study, sop, XRAY_DOSE_SR, "SR")
    ds.SeriesInstanceUID = series
    ds.SeriesNumber = 997
    ds.InstanceNumber = 1
    ds.SeriesDescription = "DOSE REPORT (SYNTHETIC)"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    return _to_bytes(ds)


def _screen_capture(study: Study, sop: str, series: str, rng: np.random.Generator) -> bytes:
    """An RGB Secondary Capture (a dose screen or a viewer snapshot)."""
    ds = _base_dataset(study, sop, SECONDARY_CAPTURE, "OT")
    ds.SeriesInstanceUID = series
    ds.SeriesNumber = 998
    ds.InstanceNumber = 1
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ConversionType = "WSD"
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows = ds.Columns = 32
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8).tobytes()
    return _to_bytes(ds)


def write_other_series(study: Study, stack: np.ndarray, folder: Path | None) -> list[SeriesRow]:
    """Writes the series a scanner sends with the axial brain series, from its HU `stack`
    (slices in file order, k = 0 first): a lateral scout, the same positions with a bone
    kernel, 1.25 mm slices interpolated between them, three coronal and three sagittal
    reformats, a dose SR and an RGB screen capture. Identifiers come from a generator of
    their own, so the brain series is the same with or without them."""
    rng = np.random.default_rng([study.seed, study.index, 7])
    uid = (lambda: _rsna_id(_uid(rng))) if study.options.rsna_uids else (lambda: _uid(rng))
    n, dz, px = study.size, study.dz, study.spacing
    order = np.argsort(study.zs)
    zs = study.z_patient0 + study.zs[order]
    ascending_stack = stack[order]  # z increasing
    corner = -(n - 1) / 2 * px
    axial = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    rows: list[SeriesRow] = []
    files: list[tuple[str, bytes]] = []

    def add_series(kind: str, number: int, role: str, reason: str, images: list[tuple[str, bytes]]) -> None:
        rows.append(SeriesRow(study.study_uid, series, number, kind, len(images), role, reason))
        files.extend(images)

    # Scout: a lateral projection (sagittal plane), as the first series of the study.
    series = uid()
    lateral = ascending_stack.mean(axis=2)[::-1]  # rows: head to foot; columns: posterior to anterior
    sop = uid()
    add_series("scout", 1, "skipped", "localizer", [(sop, _ct_image(
        study, lateral, sop=sop, series=series, number=1, instance=1, image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"],
        description="SCOUT (SYNTHETIC)", kernel="STANDARD", thickness=dz,
        position=[0.0, corner, float(zs[-1])], orientation=[0, 1, 0, 0, 0, -1], spacing=(dz, px)))])
    # Bone kernel: the same positions and instance numbers.
    series = uid()
    images = []
    for k in range(study.n):
        sop = uid()
        instance = k + 1 if study.ascending else study.n - k
        z = study.z_patient0 + float(study.zs[k])
        images.append((sop, _ct_image(
            study, stack[k], sop=sop, series=series, number=3, instance=instance, image_type=["ORIGINAL", "PRIMARY", "AXIAL"],
            description="AXIAL BONE (SYNTHETIC)", kernel="BONE", thickness=dz, position=[corner, corner, z],
            orientation=axial, spacing=(px, px))))
    add_series("bone", 3, "triaged", "", images)
    # Thin slices, 1.25 mm, interpolated between neighbouring 5 mm slices.
    series = uid()
    images = []
    steps = max(1, int(round(dz / 1.25)))
    for k in range(len(zs) - 1):
        for j in range(steps):
            t = j / steps
            sop = uid()
            images.append((sop, _ct_image(
                study, (1 - t) * ascending_stack[k] + t * ascending_stack[k + 1], sop=sop, series=series, number=4,
                instance=len(images) + 1, image_type=["ORIGINAL", "PRIMARY", "AXIAL"], description="AXIAL THIN (SYNTHETIC)",
                kernel="STANDARD", thickness=dz / steps, position=[corner, corner, float(zs[k] + t * (zs[k + 1] - zs[k]))],
                orientation=axial, spacing=(px, px))))
    add_series("thin", 4, "triaged", "", images)
    # Coronal and sagittal reformats, head to foot.
    for kind, number, orientation in (("coronal", 5, [1, 0, 0, 0, 0, -1]), ("sagittal", 6, [0, 1, 0, 0, 0, -1])):
        series = uid()
        images = []
        for m, at in enumerate((3 * n // 8, n // 2, 5 * n // 8)):
            plane = ascending_stack[:, at, :] if kind == "coronal" else ascending_stack[:, :, at]
            offset = corner + at * px
            position = [corner, offset, float(zs[-1])] if kind == "coronal" else [offset, corner, float(zs[-1])]
            sop = uid()
            images.append((sop, _ct_image(
                study, plane[::-1], sop=sop, series=series, number=number, instance=m + 1, image_type=REFORMATTED,
                description=f"{kind.upper()} MPR (SYNTHETIC)", kernel="STANDARD", thickness=px, position=position,
                orientation=orientation, spacing=(dz, px))))
        add_series(kind, number, "skipped", "derived", images)
    series = uid()
    sop = uid()
    add_series("dose", 997, "skipped", "not-image", [(sop, _dose_report(study, sop, series))])
    series = uid()
    sop = uid()
    add_series("capture", 998, "skipped", "not-ct", [(sop, _screen_capture(study, sop, series, rng))])
    if folder is not None:
        for sop, data in files:
            (folder / f"{sop}.dcm").write_bytes(data)
    return rows


def _rsna_id(uid: str) -> str:
    """The RSNA 2019 challenge's identifier form, derived from a UID: ID_ and 10 hex digits."""
    return "ID_" + hashlib.sha256(uid.encode()).hexdigest()[:10]


# --------------------------------------------------------------------------
# Driver


@dataclass
class StudyResult:
    index: int
    study_uid: str
    rows: list[tuple[str, int, float, np.ndarray]]  # sop, instance, z, positive[6]
    render_seconds: float
    write_seconds: float
    quirks: list[str]
    pattern: tuple[int, ...]
    series: list[SeriesRow] = field(default_factory=list)  # all series, the brain one included (--multi-series)


def make_study(job: tuple[int, int, Options, str | None]) -> StudyResult:
    seed, index, options, out = job
    study = sample_study(seed, index, options)
    if options.rsna_uids:
        study.study_uid, study.series_uid = _rsna_id(study.study_uid), _rsna_id(study.series_uid)
        study.sop_uids = [_rsna_id(uid) for uid in study.sop_uids]
    rows = []
    stack = []
    render_s = write_s = 0.0
    folder = None
    if out is not None:
        folder = Path(out) / study.study_uid
        folder.mkdir(parents=True, exist_ok=True)
    for k in range(study.n):
        t0 = time.perf_counter()
        image = render_slice(study, k)
        t1 = time.perf_counter()
        render_s += t1 - t0
        if folder is not None:
            (folder / f"{study.sop_uids[k]}.dcm").write_bytes(encode_slice(study, k, image.hu))
            write_s += time.perf_counter() - t1
        instance = k + 1 if study.ascending else study.n - k
        rows.append((study.sop_uids[k], instance, study.z_patient0 + float(study.zs[k]), image.positive))
        if options.multi_series:
            stack.append(image.hu.astype(np.float32))
    series: list[SeriesRow] = []
    if options.multi_series:
        t0 = time.perf_counter()
        series = [SeriesRow(study.study_uid, study.series_uid, 2, "brain", study.n, "primary", "")]
        series += write_other_series(study, np.stack(stack), folder)
        write_s += time.perf_counter() - t0
    return StudyResult(index, study.study_uid, rows, render_s, write_s, study.quirks(), study.pattern, series)


def run(out: Path | None, studies: int, seed: int, options: Options, workers: int = 1,
        progress: bool = True) -> list[StudyResult]:
    jobs = [(seed, i, options, None if out is None else str(out)) for i in range(studies)]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    results: list[StudyResult] = []
    if workers <= 1:
        iterator = map(make_study, jobs)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers)
        iterator = pool.imap(make_study, jobs, chunksize=1)
    try:
        for result in iterator:
            results.append(result)
            if progress and (len(results) % 10 == 0 or len(results) == studies):
                print(f"  {len(results)}/{studies} studies", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    if out is not None:
        with open(out / "labels.csv", "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["ID", "Label"])
            for r in results:
                for sop, _, _, positive in r.rows:
                    for name in CSV_LABELS:
                        w.writerow([f"ID_{sop}_{name}", int(positive[LABELS.index(name)])])
        with open(out / "studies.csv", "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["StudyInstanceUID", "SOPInstanceUID", "InstanceNumber", "z"])
            for r in results:
                for sop, instance, z, _ in r.rows:
                    w.writerow([r.study_uid, sop, instance, _ds_str(z)])
        if options.multi_series:
            with open(out / "series.csv", "w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(["StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "kind", "instances", "role", "reason"])
                for r in results:
                    for row in r.series:
                        w.writerow([row.study_uid, row.series_uid, row.number, row.kind, row.instances, row.role, row.reason])
    return results


def summary(results: list[StudyResult]) -> str:
    positive = np.array([row[3] for r in results for row in r.rows], dtype=np.int64).reshape(-1, 6)
    slices = len(positive)
    lines = [f"{len(results)} studies, {slices} slices"]
    lines.append(f"{'label':<18} {'slices':>7} {'achieved':>9} {'target':>7} {'studies':>8}")
    study_pos = np.array([np.max([row[3] for row in r.rows], axis=0) for r in results]).reshape(-1, 6)
    for i, name in enumerate(LABELS):
        lines.append(f"{name:<18} {int(positive[:, i].sum()):>7} {positive[:, i].mean():>9.2%} "
                     f"{TARGET_PREVALENCE[name]:>7.1%} {study_pos[:, i].mean():>8.1%}")
    render = sum(r.render_seconds for r in results)
    write = sum(r.write_seconds for r in results)
    lines.append(f"render {1000 * render / max(slices, 1):.1f} ms/slice, encode+write "
                 f"{1000 * write / max(slices, 1):.1f} ms/slice (one worker's time)")
    quirks = {q: sum(q in r.quirks for r in results) for q in QUIRKS}
    lines.append("quirky studies: " + ", ".join(f"{q} {c}" for q, c in quirks.items())
                 + f"; {sum(bool(r.quirks) for r in results)} of {len(results)} studies")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="output directory (required unless --no-write)")
    parser.add_argument("--studies", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--slices-min", type=int, default=24)
    parser.add_argument("--slices-max", type=int, default=40)
    parser.add_argument("--size", type=int, default=512, help="rows = columns (default 512)")
    parser.add_argument("--prevalence", type=float, default=DEFAULT_PREVALENCE,
                        help="target slice-level 'any' prevalence (default 0.14; 0 = no hemorrhage)")
    parser.add_argument("--workers", type=int, default=1, help="processes (the output does not depend on it)")
    parser.add_argument("--quirk-fraction", type=float, default=0.1,
                        help="fraction of studies stored with a scanner quirk (default 0.1)")
    parser.add_argument("--no-write", action="store_true", help="render and label only; write no files")
    parser.add_argument("--multi-series", action="store_true",
                        help="also write a scout, a bone-kernel and a thin series, coronal and sagittal reformats, "
                             "a dose SR and an RGB screen capture per study (series.csv lists them)")
    parser.add_argument("--rsna-uids", action="store_true", help="RSNA 2019-style identifiers (ID_<hex>) instead of 2.25 UIDs")
    args = parser.parse_args(argv)
    if args.out is None and not args.no_write:
        parser.error("--out is required")
    if not 1 <= args.slices_min <= args.slices_max:
        parser.error("need 1 <= --slices-min <= --slices-max")
    if args.size < 64:
        parser.error("--size must be at least 64")
    if args.seed < 0 or args.studies < 1:
        parser.error("--seed must be >= 0 and --studies >= 1")
    options = Options(args.size, args.slices_min, args.slices_max, args.prevalence, args.quirk_fraction,
                      args.multi_series, args.rsna_uids)
    start = time.perf_counter()
    results = run(None if args.no_write else args.out, args.studies, args.seed, options, args.workers)
    print(summary(results))
    print(f"wall time {time.perf_counter() - start:.1f} s with {args.workers} worker(s)"
          + ("" if args.no_write else f"; wrote {args.out}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
