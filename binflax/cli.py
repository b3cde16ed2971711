"""What ``main.py`` runs: mode dispatch, with user errors turned into messages, not traces.

Why separate from main.py: main.py only parses flags (the flax examples' shape), and
this function is what tests call to run a mode in-process. Errors a user can fix (a
missing data set, a bad plan, a bad config value) print one clear message and exit 1;
SIGTERM exits 143 after its checkpoint is saved; a diverged run exits 2.
"""

from __future__ import annotations

import sys

import ml_collections
from absl import logging as absl_logging

from binflax.errors import ConfigError, UserError

EXIT_USER_ERROR = 1
EXIT_DIVERGED = 2
EXIT_PREEMPTED = 143


def run(
    config: ml_collections.ConfigDict,
    *,
    mode: str | None,
    workdir: str,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    multihost: bool = False,
) -> int:
    """Runs ``mode`` (default ``config.mode``) and returns the process exit code."""
    from binflax import config_check, modes, parallel, train

    mode = mode or config.mode
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every save at INFO
    try:
        if mode not in modes.MODES:
            raise ConfigError(f"unknown mode {mode!r}; modes: {', '.join(modes.MODES)}")
        config = config_check.checked(config)
        if multihost or coordinator_address or (num_processes or 1) > 1:
            parallel.initialize_distributed(coordinator_address, num_processes, process_id)
        modes.MODES[mode](config, workdir)
    except train.Preempted as e:
        _error(str(e))
        return EXIT_PREEMPTED
    except train.TrainingDiverged as e:
        _error(str(e))
        return EXIT_DIVERGED
    except UserError as e:
        _error(str(e))
        return EXIT_USER_ERROR
    return 0


def _error(message: str) -> None:
    print(f"binflax: {message}", file=sys.stderr, flush=True)
