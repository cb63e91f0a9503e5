"""ranvier.data.packaged_file: files inside installed distributions, found without importing."""

import pathlib

from ranvier.data import packaged_file


def test_finds_a_file_of_an_installed_distribution():
    path = packaged_file("numpy", "numpy/__init__.py")
    assert isinstance(path, pathlib.Path) and path.is_file()
    assert path.parts[-2:] == ("numpy", "__init__.py")


def test_missing_file_or_distribution_gives_none():
    assert packaged_file("numpy", "numpy/no_such_file.txt") is None
    assert packaged_file("no-such-distribution-ranvier-test", "x/y.txt") is None
