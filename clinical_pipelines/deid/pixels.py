"""Pixel cleaning (PS3.15 Clean Pixel Data Option): blank the regions where burned-in text sits.

Only done when a policy asks for it, per modality: the pixel data is decoded (native, uncompressed
transfer syntaxes only), every frame's listed regions are set to zero, and the result is written
back uncompressed. Everything else copies pixel data as bytes, never decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

CLEAN_PIXEL_CODE = "113101"
CLEAN_PIXEL_MEANING = "Clean Pixel Data Option"
_NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
_PHOTOMETRICS = {"MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR"}


class PixelCleaningError(Exception):
    """The instance's pixel data cannot be cleaned here (compressed, 1-bit, unusual colour model)."""


@dataclass(frozen=True)
class PixelMask:
    """Regions blanked in every frame, as fractions of the image: (top, left, bottom, right) in 0..1.

    Fractions, not pixels, so one mask fits every matrix size a device produces
    (e.g. ``((0.0, 0.0, 0.08, 1.0),)``: the top 8 % of the image, where ultrasound units print
    patient banners).
    """

    regions: tuple[tuple[float, float, float, float], ...]

    def __post_init__(self) -> None:
        for top, left, bottom, right in self.regions:
            if not (0 <= top < bottom <= 1 and 0 <= left < right <= 1):
                raise ValueError("mask regions are (top, left, bottom, right) fractions with top<bottom, left<right")


def clean_pixels(ds: Dataset, mask: PixelMask) -> int:
    """Blank ``mask``'s regions in every frame of ``ds`` in place; returns how many pixels were blanked.

    Raises :class:`PixelCleaningError` (never a value from the file) when the pixel data is not
    native (uncompressed) or has a layout this does not rewrite.
    """
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if syntax not in _NATIVE_SYNTAXES:
        raise PixelCleaningError("pixel cleaning needs uncompressed (native) pixel data")
    if "PixelData" not in ds or int(ds.get("BitsAllocated", 0) or 0) not in (8, 16, 32):
        raise PixelCleaningError("pixel cleaning needs 8, 16 or 32 bits allocated")
    if str(ds.get("PhotometricInterpretation", "")).strip() not in _PHOTOMETRICS:
        raise PixelCleaningError("pixel cleaning handles monochrome, RGB and palette colour images")
    vr = ds["PixelData"].VR if ds["PixelData"].VR in ("OB", "OW") else ("OW" if ds.BitsAllocated > 8 else "OB")
    pixels = ds.pixel_array.copy()  # (frames,) rows, columns (, samples), samples interleaved
    rows, columns = int(ds.Rows), int(ds.Columns)
    frames = pixels if int(ds.get("NumberOfFrames", 1) or 1) > 1 else pixels[None, ...]
    blanked = 0
    for top, left, bottom, right in mask.regions:
        r0, r1 = int(top * rows), max(int(top * rows) + 1, round(bottom * rows))
        c0, c1 = int(left * columns), max(int(left * columns) + 1, round(right * columns))
        frames[:, r0:r1, c0:c1, ...] = 0
        blanked += (r1 - r0) * (c1 - c0) * frames.shape[0]
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        ds.PlanarConfiguration = 0  # written back interleaved, whatever it was
    ds[0x7FE00010] = DataElement(0x7FE00010, vr, pixels.tobytes())
    ds.BurnedInAnnotation = "NO"
    return blanked
