"""Datasets over the store, patient-level splits, transforms, and store inspection.

Import from the submodules (``medtl.data.splits`` needs no torch; ``dataset`` and ``transforms`` do).
"""
