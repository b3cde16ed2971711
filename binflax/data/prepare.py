"""Prepare a TFDS dataset once, before training, with binflax's checks and messages::

    python -m binflax.data.prepare tu_berlin --manual_dir ~/manual [--data_dir DIR]

Why a command of its own: a multi-process run refuses to prepare a dataset (concurrent
writers would race), and TFDS's ``tfds build`` command line imports apache-beam, which
binflax does not need. This is ``tfds build DATASET --imports binflax.data`` with the
same missing-file messages as a training run.
"""

from __future__ import annotations

import argparse
import sys

import ml_collections

from binflax.data import recipes, tfds_source
from binflax.data.common import DatasetError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(recipes.RECIPES))
    parser.add_argument("--manual_dir", default=None, help="the manually downloaded archives")
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (TFDS's default if unset)")
    args = parser.parse_args(argv)
    config = ml_collections.ConfigDict(
        {"dataset": args.dataset, "data_dir": args.data_dir, "manual_dir": args.manual_dir}
    )
    recipe = recipes.recipe(args.dataset)
    try:
        builder = tfds_source.prepared_builder(
            config, recipe.tfds_name, check_manual=recipe.check_manual, process_count=1
        )
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{k}: {v.num_examples}" for k, v in sorted(builder.info.splits.items()))
    print(f"{args.dataset} is prepared in {builder.data_dir} ({sizes})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
