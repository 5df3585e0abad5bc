"""zoengine: zeroth-order fine-tuning of language models with parameter-efficient adapters.

Command line::

    zoengine assets fetch smollm2-135m-instruct rotten-tomatoes
    zoengine train --config examples/rotten-tomatoes-mezo.toml
"""

from zoengine.config import RunConfig
from zoengine.errors import ZOError

__version__ = "0.1.0"
__all__ = ["RunConfig", "ZOError", "__version__"]
