"""Deterministic DICOM UIDs under a fixed root, drawn from a seeded RNG (never random UIDs)."""

from __future__ import annotations

import random

#: Root for every UID this generator emits.
UID_ROOT = "1.2.826.0.1.3680043.10.543."
#: Implementation Class UID written to every file meta header.
IMPLEMENTATION_CLASS_UID = UID_ROOT + "0.1"
IMPLEMENTATION_VERSION_NAME = "CP_SYNTH_1"

# First component after the root tells the UID's role apart.
STUDY, SERIES, INSTANCE, FRAME_OF_REFERENCE = 1, 2, 3, 4


def make_uid(rng: random.Random, role: int) -> str:
    """Return ``<root><role>.<18 random digits>``: valid UID syntax, at most 64 characters."""
    return f"{UID_ROOT}{role}.{rng.randrange(10**17, 10**18)}"


def instance_uid(series_token: str, instance_number: int) -> str:
    """Return the SOP Instance UID of slice ``instance_number`` (1-based) of a series.

    ``series_token`` is a UID made with role ``INSTANCE``; the slice number becomes its
    last component.
    """
    if instance_number < 1:
        raise ValueError("instance numbers start at 1")
    uid = f"{series_token}.{instance_number}"
    if len(uid) > 64:
        raise ValueError("UID too long")
    return uid
