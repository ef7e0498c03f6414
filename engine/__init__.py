"""diffrnn: recurrent networks with differentiable structure (Miconi 2016), on Numba."""

from .config import ConfigError, RunConfig
from .run import RunResult, run, run_id, warm_up
from .tasks import entropy_floor, parse_task
from .version import ENGINE_VERSION

__version__ = ENGINE_VERSION
__all__ = [
    "ConfigError",
    "RunConfig",
    "RunResult",
    "run",
    "run_id",
    "warm_up",
    "entropy_floor",
    "parse_task",
    "__version__",
]
