"""Voila dashboards for stakeholders: monitoring and the model, as ipywidgets built from the latest
pipeline outputs. The notebooks in dashboards/ only call these functions."""


def wait_for_viewer() -> None:
    """Under Voila with pre-heated kernels, pause here until a page is requested.

    Voila starts and runs a dashboard's kernel before anyone asks for the page; everything above this
    call (the imports, the slow part) happens ahead of time, everything below it (reading the latest
    outputs) happens when the page is opened, so the data is never stale. Elsewhere (JupyterLab,
    nbval, plain Voila) it returns at once.
    """
    try:
        from voila.utils import wait_for_request
    except ImportError:  # not running under Voila
        return
    wait_for_request()
