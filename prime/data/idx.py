"""The IDX file format of MNIST and Fashion-MNIST: read and write, plain or gzip-compressed.

An IDX file is a header and the data, big-endian::

    bytes 0-1   0x00 0x00 (magic)
    byte  2     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                           0x0D float32, 0x0E float64
    byte  3     number of dimensions D
    4 * D       the size of each dimension, uint32
    then        prod(sizes) items of the type, row-major (C order)

A file whose name ends in ``.gz`` is gzip-compressed (as released); any other is plain.
Every problem with a file is a :class:`PrimeError` that names the file, the problem and
the fix.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from prime.core.errors import PrimeError
from prime.core.io import atomic_path

#: type code -> big-endian item type
TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
#: item type (native order) -> type code
CODE_OF: dict[np.dtype, int] = {dtype.newbyteorder("="): code for code, dtype in TYPE_CODES.items()}
GZIP_MAGIC = b"\x1f\x8b"
FIX = "download the file again (or unpack it completely)"


def _is_gzip(path: Path) -> bool:
    return path.suffix == ".gz"


def _read_bytes(path: Path, size: int | None = None) -> bytes:
    """All bytes of ``path`` (or its first ``size``), decompressed if it is a ``.gz`` file."""
    if not path.is_file():
        raise PrimeError(f"no such file: {path} (an IDX file, plain or .gz); check the path")
    try:
        if _is_gzip(path):
            with gzip.open(path, "rb") as f:
                return f.read() if size is None else f.read(size)
        with open(path, "rb") as f:
            return f.read() if size is None else f.read(size)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise PrimeError(
            f"{path} is not a complete gzip file ({type(exc).__name__}: {exc}); {FIX}, or "
            "drop the .gz from its name if it is not compressed"
        ) from None
    except OSError as exc:
        raise PrimeError(
            f"cannot read {path} ({exc.strerror or exc}); check its permissions"
        ) from None


def _parse_header(path: Path, data: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """(big-endian item type, shape, header length in bytes) of an IDX file's bytes."""
    if len(data) < 4:
        raise PrimeError(
            f"{path} is truncated: {len(data)} bytes, shorter than an IDX header; {FIX}"
        )
    if data[:2] != b"\x00\x00":
        hint = (
            "it looks gzip-compressed: name it .gz"
            if data[:2] == GZIP_MAGIC and not _is_gzip(path)
            else f"is it an IDX file (e.g. train-images-idx3-ubyte)? if it is, {FIX}"
        )
        raise PrimeError(
            f"{path} has the wrong magic number 0x{data[:4].hex()} (an IDX file starts with "
            f"0x0000, then its type code and number of dimensions); {hint}"
        )
    code, ndim = data[2], data[3]
    if code not in TYPE_CODES:
        known = ", ".join(f"0x{c:02X} {t.name}" for c, t in TYPE_CODES.items())
        raise PrimeError(
            f"{path} has the unknown IDX type code 0x{code:02X} (known: {known}); the file is "
            f"corrupt or not an IDX file: {FIX}"
        )
    if ndim == 0:
        raise PrimeError(f"{path} declares 0 dimensions (an IDX file has at least 1); {FIX}")
    end = 4 + 4 * ndim
    if len(data) < end:
        raise PrimeError(
            f"{path} is truncated inside its header ({len(data)} bytes, the header of {ndim} "
            f"dimensions takes {end}); {FIX}"
        )
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return TYPE_CODES[code], shape, end


def read_idx_header(path: str | os.PathLike) -> tuple[np.dtype, tuple[int, ...]]:
    """(item type in native byte order, shape) from an IDX file's header only."""
    path = Path(path)
    head = _read_bytes(path, 4)
    ndim = head[3] if len(head) == 4 else 0
    dtype, shape, _ = _parse_header(path, _read_bytes(path, 4 + 4 * ndim))
    return dtype.newbyteorder("="), shape


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array of an IDX file (``.gz``: gzip-compressed), of its shape, native byte order.

    The data must have exactly the size that the header declares: a shorter file is
    truncated, a longer one has trailing bytes; both are errors.
    """
    path = Path(path)
    data = _read_bytes(path)
    dtype, shape, start = _parse_header(path, data)
    items = int(np.prod(shape, dtype=np.int64))
    expected, found = items * dtype.itemsize, len(data) - start
    described = f"{' x '.join(map(str, shape))} {dtype.name} = {expected:,} bytes"
    if found < expected:
        raise PrimeError(
            f"{path} is truncated: its header declares {described} of data but only "
            f"{found:,} follow; {FIX}"
        )
    if found > expected:
        raise PrimeError(
            f"{path} has {found - expected:,} trailing bytes after the {described} of data its "
            f"header declares (corrupt, or two files joined); {FIX}"
        )
    array = np.frombuffer(data, dtype=dtype, count=items, offset=start)
    return array.astype(dtype.newbyteorder("=")).reshape(shape)


def read_idx_pair(
    images_path: str | os.PathLike, labels_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, H, W], labels int64 [N]) of an image file and its label file.

    The images must be a 3-D uint8 IDX file (idx3-ubyte), the labels a 1-D integer IDX
    file (idx1-ubyte) with one label per image.
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise PrimeError(
            f"{images_path} holds {images.dtype} {list(images.shape)}, not uint8 images "
            "[N, H, W] (an idx3-ubyte file); check that it is an image file"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise PrimeError(
            f"{labels_path} holds {labels.dtype} {list(labels.shape)}, not labels [N] (an "
            "idx1-ubyte file); check that it is a label file"
        )
    if len(labels) != len(images):
        raise PrimeError(
            f"{labels_path} has {len(labels):,} labels but {images_path} has {len(images):,} "
            "images; the label file must belong to the image file (train-* with train-*, "
            "t10k-* with t10k-*, same dataset)"
        )
    return images, labels.astype(np.int64)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file atomically (gzip-compressed if ``path`` ends in .gz).

    The item type must be one IDX has (uint8, int8, int16, int32, float32, float64); the
    array has 1 to 255 dimensions. Compressed files are byte-for-byte reproducible.
    """
    path, array = Path(path), np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in CODE_OF:
        known = ", ".join(sorted(t.name for t in CODE_OF))
        raise PrimeError(f"IDX cannot store {array.dtype} (it stores {known}); convert first")
    if not 1 <= array.ndim <= 255 or max(array.shape) >= 2**32:
        raise PrimeError(f"IDX cannot store an array of shape {array.shape} (1 to 255 dims)")
    header = bytes([0, 0, CODE_OF[native], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + np.ascontiguousarray(array, dtype=TYPE_CODES[CODE_OF[native]]).tobytes()
    with atomic_path(path) as tmp:
        if _is_gzip(path):
            with open(tmp, "wb") as raw, gzip.GzipFile(path.name, "wb", fileobj=raw, mtime=0) as f:
                f.write(data)
        else:
            tmp.write_bytes(data)
    return path
