"""2-D image readers behind one interface: ``read_image(path) -> (array, ImageMeta)``.

PNG, JPEG, TIFF, BMP and GIF are read with Pillow, DICOM with pydicom (modality LUT, i.e.
rescale slope/intercept, applied; MONOCHROME1 inverted so that high values are bright),
MATLAB ``.mat`` files with h5py (v7.3, HDF5) or scipy (older versions). Arrays come back as
float32, ``(H, W)`` for grayscale and ``(H, W, 3)`` for colour, together with the nominal value
range of the stored pixel type when the format defines one (8-bit: 0..255), so converters can
scale intensities without looking at the data. ``image_info`` reads only headers. Every
failure is an ``InputError`` naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medtl.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
DICOM_SUFFIXES = (".dcm", ".dicom")
MASK_SUFFIXES = (".png", ".gif", ".tif", ".tiff", ".bmp")

# Pillow modes read as they are; everything else is converted to RGB first.
_GRAY_MODES = {"1": (0.0, 255.0), "L": (0.0, 255.0), "LA": (0.0, 255.0), "La": (0.0, 255.0)}
_GRAY16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


@dataclass(frozen=True)
class ImageMeta:
    """What a reader knows about an image besides its pixels.

    ``value_range`` is the nominal range of the stored pixel type (8-bit: (0, 255); 16-bit:
    (0, 65535)); None when the values have no fixed range (float TIFF, rescaled DICOM, .mat),
    so a converter must scale them from the data.
    """

    format: str
    channels: int
    value_range: tuple[float, float] | None


def is_dicom(path: str | Path) -> bool:
    """By suffix, or for files without one (common in DICOM exports) by the ``DICM`` marker."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return True
    if suffix in IMAGE_SUFFIXES:
        return False
    # No suffix, or one that is part of a UID name ("1.2.840.113619.2.55.3.60...")
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def is_image_file(path: str | Path) -> bool:
    """True for the files ``read_image`` reads (by name; the content is checked when read)."""
    path = Path(path)
    if path.name.startswith("."):
        return False  # .DS_Store, ._name resource forks from macOS archives
    return path.suffix.lower() in IMAGE_SUFFIXES or is_dicom(path)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


# -- Pillow ---------------------------------------------------------------------------------------
def _open_pil(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except UnidentifiedImageError:
        raise InputError(path, "not a readable image (unknown or damaged format)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(path, f"not a readable image ({_reason(exc)})") from None
    return img


def _pil_channels(mode: str) -> int:
    return 1 if mode in _GRAY_MODES or mode in _GRAY16_MODES or mode in ("I", "F") else 3


def _read_pil(path: Path) -> tuple[np.ndarray, ImageMeta]:
    from PIL import Image

    img = _open_pil(path)
    fmt = (img.format or path.suffix.lstrip(".")).lower()
    try:
        with img:
            img.load()
            mode = img.mode
            if mode in ("1", "LA", "La"):
                img = img.convert("L")
            elif _pil_channels(mode) == 3 and mode != "RGB":
                img = img.convert("RGB")  # palette, RGBA, CMYK, YCbCr, ...
            array = np.asarray(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # Truncated files pass open() (it reads the header only) and fail here.
        raise InputError(path, f"not a readable image ({_reason(exc)})") from None
    if mode in _GRAY_MODES or _pil_channels(mode) == 3:
        value_range: tuple[float, float] | None = (0.0, 255.0)
    elif mode in _GRAY16_MODES:
        value_range = (0.0, 65535.0)
    else:  # "I" (32-bit int), "F" (float): no fixed range
        value_range = None
    return array.astype(np.float32), ImageMeta(fmt, _pil_channels(mode), value_range)


# -- DICOM ----------------------------------------------------------------------------------------
def _dcmread(path: Path, *, pixels: bool):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise InputError(path, f"not a readable DICOM file ({_reason(exc)})") from None


def _dicom_channels(ds: Any) -> int:
    if str(ds.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
        return 3
    return int(ds.get("SamplesPerPixel", 1) or 1)


def _read_dicom(path: Path) -> tuple[np.ndarray, ImageMeta]:
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    ds = _dcmread(path, pixels=True)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise InputError(path, f"multi-frame DICOM ({frames} frames); medtl reads single-frame images")
    try:
        raw = ds.pixel_array
    except AttributeError:
        raise InputError(path, "DICOM file has no pixel data") from None
    except Exception as exc:  # decoders raise ValueError, RuntimeError, NotImplementedError, ...
        raise InputError(path, f"DICOM pixel data cannot be decoded ({_reason(exc)})") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        array = apply_color_lut(raw, ds).astype(np.float32)
        bits = 16 if array.max(initial=0) > 255 else 8
        return array, ImageMeta("dicom", 3, (0.0, float(2**bits - 1)))
    if raw.ndim == 3:  # colour: pydicom already converted YBR to RGB
        bits = int(ds.get("BitsStored", 8) or 8)
        return raw.astype(np.float32), ImageMeta("dicom", 3, (0.0, float(2**bits - 1)))
    array = np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
    # A nominal range exists only for unsigned pixels that the modality LUT left unchanged;
    # CT in Hounsfield units and signed data are scaled from the data instead.
    identity = float(ds.get("RescaleSlope", 1) or 1) == 1 and float(ds.get("RescaleIntercept", 0) or 0) == 0
    unsigned = int(ds.get("PixelRepresentation", 0) or 0) == 0
    value_range = None
    if identity and unsigned and "ModalityLUTSequence" not in ds:
        value_range = (0.0, float(2 ** int(ds.get("BitsStored", 16) or 16) - 1))
    if photometric == "MONOCHROME1":  # minimum is white: invert so every image has bright = high
        lo, hi = value_range if value_range else (float(array.min()), float(array.max()))
        array = (lo + hi) - array
    return array, ImageMeta("dicom", 1, value_range)


# -- MATLAB ---------------------------------------------------------------------------------------
def _h5_value(dataset: Any) -> Any:
    value = dataset[()]
    matlab_class = dataset.attrs.get("MATLAB_class", b"")
    if isinstance(matlab_class, bytes):
        matlab_class = matlab_class.decode("ascii", "replace")
    if matlab_class == "char":  # MATLAB stores text as uint16 character codes
        return "".join(chr(int(c)) for c in np.asarray(value).T.ravel() if int(c))
    if isinstance(value, np.ndarray) and value.ndim >= 2:
        value = value.T  # HDF5 holds MATLAB's column-major arrays with the axes reversed
    return value


def _flatten_cells(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not key.startswith("__"):
                _flatten_cells(item, f"{prefix}/{key}" if prefix else key, out)
    else:
        out[prefix] = value


def read_mat(path: str | Path, names: Sequence[str] | None = None) -> dict[str, Any]:
    """The variables of a ``.mat`` file as ``{"struct/field": array or str}``.

    v7.3 files are HDF5 and read with h5py (arrays transposed back to MATLAB's orientation,
    char arrays decoded); older versions are read with scipy. ``names`` limits what is read
    (a missing name raises InputError).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    out: dict[str, Any] = {}
    if h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as fh:
                if names is None:
                    # "#refs#" holds the targets of cell-array references, not variables
                    names = []
                    fh.visititems(
                        lambda key, obj: (
                            names.append(key)
                            if isinstance(obj, h5py.Dataset) and not key.startswith("#")
                            else None
                        )
                    )
                for name in names:
                    obj = fh.get(name)
                    if not isinstance(obj, h5py.Dataset):
                        raise InputError(path, f"no variable '{name}' in the .mat file")
                    out[name] = _h5_value(obj)
        except InputError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(path, f"not a readable .mat (HDF5) file ({_reason(exc)})") from None
        return out
    from scipy.io import loadmat

    try:
        _flatten_cells(loadmat(path, simplify_cells=True), "", out)
    except Exception as exc:
        # scipy's parser fails on foreign bytes in many ways (MatReadError, ValueError, IndexError on
        # a text file renamed .mat, ...): every one means the same thing to the user.
        raise InputError(path, f"not a readable .mat file ({_reason(exc)})") from None
    if names is None:
        return out
    missing = [name for name in names if name not in out]
    if missing:
        raise InputError(path, f"no variable '{missing[0]}' in the .mat file")
    return {name: out[name] for name in names}


def mat_shape(path: str | Path, name: str) -> tuple[int, ...]:
    """Shape of one variable in MATLAB's orientation, read from the header only when HDF5."""
    import h5py

    path = Path(path)
    if not h5py.is_hdf5(path):
        return tuple(np.shape(read_mat(path, [name])[name]))
    try:
        with h5py.File(path, "r") as fh:
            obj = fh.get(name)
            if not isinstance(obj, h5py.Dataset):
                raise InputError(path, f"no variable '{name}' in the .mat file")
            return tuple(reversed(obj.shape))
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable .mat (HDF5) file ({_reason(exc)})") from None


# -- the interface --------------------------------------------------------------------------------
def read_image(path: str | Path) -> tuple[np.ndarray, ImageMeta]:
    """Pixels as float32 ``(H, W)`` or ``(H, W, 3)`` plus metadata; InputError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if is_dicom(path):
        return _read_dicom(path)
    return _read_pil(path)


def image_info(path: str | Path) -> tuple[int, int, int]:
    """``(height, width, channels)`` from the file header, without decoding the pixels."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if is_dicom(path):
        ds = _dcmread(path, pixels=False)
        if "Rows" not in ds or "Columns" not in ds:
            raise InputError(path, "DICOM file has no image (Rows/Columns missing)")
        return int(ds.Rows), int(ds.Columns), _dicom_channels(ds)
    with _open_pil(path) as img:
        return img.height, img.width, _pil_channels(img.mode)


def read_mask(path: str | Path, *, binary: bool = True) -> np.ndarray:
    """A label image as an integer ``(H, W)`` array.

    Palette images give their palette indices (the usual label-map convention). Colour masks
    are accepted when ``binary`` (a pixel is foreground when any channel is non-zero) or when
    all channels are equal; otherwise the colours have no label meaning and InputError says so.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    from PIL import Image

    img = _open_pil(path)
    try:
        with img:
            img.load()
            if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
                img = img.convert("RGB" if img.mode[0] == "R" else img.mode[0])
            elif img.mode not in ("1", "L", "P", "RGB", "I", "F", *_GRAY16_MODES):
                img = img.convert("RGB")
            array = np.asarray(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(path, f"not a readable mask image ({_reason(exc)})") from None
    if array.ndim == 3:
        if binary:
            array = array.max(axis=2)
        elif (array == array[..., :1]).all():
            array = array[..., 0]
        else:
            raise InputError(path, "colour mask whose channels differ: its colours have no label values")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or (array != np.rint(array)).any():
            raise InputError(path, "mask values are not integers")
        array = np.rint(array)
    return array.astype(np.int64)
