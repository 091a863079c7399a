"""Pretraining routes: SimCLR, supervised domain-adaptive pretraining (DAPT) and the Adaptor.

Each uses ``medtl.engine`` for its training; this package adds what is particular to pretraining
(cached embeddings of frozen encoders, backbone export, lineage of initialisations).
"""
