"""Where the heavy stages compute: pandas in one process, or a Dask cluster, behind one interface."""
