"""zoengine: zeroth-order fine-tuning of language models with parameter-efficient adapters.

Command line::

    zoengine assets fetch smollm2-135m-instruct rotten-tomatoes
    zoengine train --config examples/rotten-tomatoes-mezo.toml
"""

from importlib import metadata

from zoengine.config import RunConfig
from zoengine.errors import ZOError


def _version() -> str:
    """The one version string: the installed distribution's (pyproject.toml's ``version``)."""
    try:
        return metadata.version("zoengine")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
        return "0+unknown"


__version__ = _version()
__all__ = ["RunConfig", "ZOError", "__version__"]
