# JupyterLab configuration for `make lab` (JUPYTER_CONFIG_DIR points here).
#
# Ploomber's server extension injects each stage notebook's parameters from pipeline.yaml and
# env.yaml when it is opened. As installed, it wraps jupytext's *async* contents manager and every
# /api/contents request answers 500 ("'coroutine' object is not subscriptable"). jupytext's
# synchronous TextFileContentsManager is the fix: Ploomber wraps it correctly.
import logging

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
    """Drops the deprecation notices Jupyter Server logs about how third-party extensions
    (Ploomber's) declare themselves: nothing a user of `make lab` can or should act on."""

    hidden = ("_jupyter_server_extension_points` function was not found",)

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in self.hidden)


c.ServerApp.logging_config = {
    "filters": {"not_the_users_business": {"()": _NotTheUsersBusiness}},
    "handlers": {"console": {"filters": ["not_the_users_business"]}},
}
