"""Find data files that ship inside installed Python packages, without importing them.

Several packages carry small biological data sets (stardist: a fluorescence image with its
nucleus mask; janggu: ChIP-seq peak sequences; scanpy: single-cell tables). Importing such a
package can pull in TensorFlow or fail on missing dependencies, so the examples locate the files
through the installed distribution's metadata (``importlib.metadata``) instead.
"""

from __future__ import annotations

import importlib.metadata
import pathlib

__all__ = ["packaged_file"]


def packaged_file(distribution: str, relative_path: str) -> pathlib.Path | None:
    """The path of ``relative_path`` inside the installed ``distribution``, or None.

    None when the distribution is not installed or does not contain the file (for example an
    older version). Nothing from the distribution is imported.

    Example:
        >>> packaged_file("stardist", "stardist/data/images/img2d.tif")
        PosixPath('.../site-packages/stardist/data/images/img2d.tif')
    """
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    wanted = pathlib.PurePosixPath(relative_path)
    # The RECORD listing is authoritative when present; locate_file covers installs without one.
    for entry in dist.files or ():
        if pathlib.PurePosixPath(str(entry)) == wanted:
            path = pathlib.Path(entry.locate())
            return path if path.is_file() else None
    path = pathlib.Path(dist.locate_file(relative_path))
    return path if path.is_file() else None
