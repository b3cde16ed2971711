"""binflax command line: parses flags and hands over to binflax (nothing else lives here).

    python main.py --config=configs/quickstart.py
    python main.py --config=configs/alexnet.py --workdir=runs/alexnet --mode=summary
    python main.py --config=configs/sketchanet_tuberlin.py:runlocal --config.seed=1

--mode is one of binflax.modes.MODES (docs/cli.md); the default is the config's ``mode``.
Without --workdir the run writes to runs/<config name>/; --workdir may be a local path or
a Cloud Storage one (gs://bucket/run), as on a Cloud TPU VM.
"""

import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
flags.DEFINE_string("workdir", None, "Output directory (default: runs/<config name>).")
flags.DEFINE_string("mode", None, "What to run: a mode of binflax.modes.MODES (docs/cli.md).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process).")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
flags.DEFINE_bool("multihost", False, "Join a multi-host job, auto-detected (Cloud TPU, SLURM).")
flags.mark_flags_as_required(["config"])


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a bad flag or ``--config`` override reported in one line."""
    try:
        argv = FLAGS(argv)
        FLAGS.config.keys()  # ml_collections reports a config file it could not load lazily
        return argv
    except (flags.Error, AttributeError, KeyError, OSError, TypeError, ValueError) as err:
        cause = err
        while cause.args and isinstance(cause.args[0], BaseException):
            cause = cause.args[0]  # ml_collections wraps the KeyError that says what is wrong
        text = str(cause.args[0]) if cause.args else str(cause)
        # the line that says what is wrong comes last (after any quoted traceback)
        message = [line.strip() for line in text.strip().splitlines() if line.strip()][-1]
        print(f"binflax: bad command line: {message}", file=sys.stderr)
        print("Pass --helpshort or --helpfull to see help on flags.", file=sys.stderr)
        sys.exit(1)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from binflax import cli  # imported after flag parsing: JAX and TF start here

    # the config file is local (ml_collections loads it); its name names the default workdir
    config_name = pathlib.PurePath(config_flags.get_config_filename(FLAGS["config"])).stem
    sys.exit(
        cli.run(
            FLAGS.config,
            mode=FLAGS.mode,
            workdir=FLAGS.workdir or str(pathlib.PurePath("runs", config_name)),
            coordinator_address=FLAGS.coordinator_address,
            num_processes=FLAGS.num_processes,
            process_id=FLAGS.process_id,
            multihost=FLAGS.multihost,
        )
    )


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
