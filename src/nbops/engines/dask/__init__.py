"""The ``dask`` engine: the heavy stages beyond one machine.

With ``engine: dask`` (env.yaml, or ``make run ENGINE=dask``) training uses ``lightgbm.dask``, and
batch scoring, the reference profile and drift read partitioned Parquet with ``dask.dataframe`` on a
Dask cluster: a ``LocalCluster`` on 127.0.0.1 by default, or the scheduler named by
``dask_scheduler``. The pandas engine stays the default and never imports this package's heavy
dependencies: every module here imports Dask inside its functions, so ``import nbops.engines.dask``
is cheap.

Modules:
    cluster    one cached client per process (local cluster or a remote scheduler, clear errors)
    parquet    partitioned Parquet as a ``dask.dataframe`` with known row offsets
    quantiles  exact quantiles over partitions, equal to ``np.quantile`` (two passes)
    profile    the reference profile and drift (``compare``) over partitions
    train      ``lightgbm.dask`` training that writes the pandas path's products
    score      batch scoring of Parquet by partition with a registered model
    monitor    the monitor stage on the cluster
    engine     :class:`DaskEngine`, the :class:`nbops.engines.base.Engine` over the modules above
"""

from nbops.engines.dask.engine import DaskEngine

__all__ = ["DaskEngine"]
