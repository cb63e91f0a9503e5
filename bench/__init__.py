"""ranvier's benchmarks: each op run by ranvier and by its peer (NumPy, PyTorch) side by side.

    python -m bench [--quick] [--only SECTION] [--markdown] [--threads N]   # from the repo root
    python bench/run.py ...                                                  # the same

Nothing here imports NumPy or ranvier at import time, so that --threads can still set the
thread-count environment variables before the libraries read them.
"""
