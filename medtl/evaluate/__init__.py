"""Evaluation beyond training: test runs on their own or external stores (``evaluate``), corruption
robustness (``corruptions``, ``robustness``) and probes on cached features (``probe``).

Import the submodules directly; this package stays light so that importing one does not load all.
"""
