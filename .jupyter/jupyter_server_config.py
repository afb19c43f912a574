# JupyterLab configuration for `make lab` (JUPYTER_CONFIG_DIR points here).
#
# Ploomber's server extension injects each stage notebook's parameters from pipeline.yaml and
# env.yaml when it is opened. As installed, it wraps jupytext's *async* contents manager and every
# /api/contents request answers 500 ("'coroutine' object is not subscriptable"). jupytext's
# synchronous TextFileContentsManager is the fix: Ploomber wraps it correctly.
import logging
import warnings

c = get_config()  # noqa: F821  (provided by Jupyter when it loads this file)
c.ServerApp.contents_manager_class = "jupytext.TextFileContentsManager"
c.ServerApp.jpserver_extensions = {
    "ploomber": True,
    # ploomber-extension's server side uploads notebooks to Ploomber Cloud (an archived service)
    # with an API key; its "Share Notebook" button is disabled in labconfig/page_config.json.
    "ploomber_extension": False,
    # The classic notebook UI is not used (JupyterLab is): loading it prints a Notebook 7 banner,
    # and its shim reads every server setting, deprecated ones included (a DeprecationWarning).
    "nbclassic": False,
    "notebook_shim": False,
}

# What `make lab` prints: warnings, errors, and the URL with its token (logged as critical).
# Extension loading, language servers and the like are not the user's business.
c.ServerApp.log_level = "WARN"
c.LabApp.log_level = "WARN"


class _NotTheUsersBusiness(logging.Filter):
    """Drops what Jupyter Server logs that a user of `make lab` cannot or need not act on: how a
    third-party extension (Ploomber's) declares itself, and that a notebook opened has no trust
    signature (committed notebooks carry no outputs to trust)."""

    hidden = ("_jupyter_server_extension_points` function was not found", " is not trusted")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in self.hidden)


c.ServerApp.logging_config = {
    "filters": {"not_the_users_business": {"()": _NotTheUsersBusiness}},
    "handlers": {"console": {"filters": ["not_the_users_business"]}},
}
# Ploomber renders the DAG to inject parameters and warns about parameters its static analysis cannot
# see used (nbops.pipeline.context reads them from globals()) and env keys the spec does not use: `nbops check`
# validates both. The same filters as `nbops build` (src/nbops/build.py); kernels are not affected.
for module in ("ploomber.dag.dag", "ploomber.sources.notebooksource", "ploomber.spec.dagspec"):
    warnings.filterwarnings("ignore", category=UserWarning, module=module)

# Saving a stage notebook: Ploomber's extension deletes the pipeline's metadata beside that task's
# products (for its own incremental build). nbops' run identities decide what reruns (the notebook's
# code is part of them), so the pipeline's products stay exactly as the build left them.
from ploomber.jupyter import manager as _ploomber_manager  # noqa: E402

_ploomber_manager.DAGMapping.delete_metadata = lambda self, key: None
