# JupyterLab configuration for `make lab` (JUPYTER_CONFIG_DIR points here).
#
# Ploomber's server extension injects each stage notebook's parameters from pipeline.yaml and
# env.yaml when it is opened. As installed, it wraps jupytext's *async* contents manager and every
# /api/contents request answers 500 ("'coroutine' object is not subscriptable"). jupytext's
# synchronous TextFileContentsManager is the fix: Ploomber wraps it correctly.
c = get_config()  # noqa: F821  (provided by Jupyter when it loads this file)
c.ServerApp.contents_manager_class = "jupytext.TextFileContentsManager"
c.ServerApp.jpserver_extensions = {"ploomber": True}
