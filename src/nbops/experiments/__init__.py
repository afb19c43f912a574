"""Experiments: the local index of every task run (:mod:`nbops.experiments.index`), what differs
between two runs, builds or model versions (:mod:`nbops.experiments.diff`), and their charts
(:mod:`nbops.experiments.charts`), without a tracking server.

W&B stays the mirror for teams with a server (its offline files cannot be read back); the index is
what nbops reads: ``nbops runs``, ``nbops runs diff``, the experiments dashboard and the static site.
"""
