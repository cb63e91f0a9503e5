"""Independent NumPy float64 references for every kernel, one module per op family.

Written from the definitions (direct formulas and loops), never by calling ranvier, so that
a test comparing the two can catch a wrong kernel.
"""
