"""Prepare a TFDS dataset once, before training, with binflax's checks and messages::

    python -m binflax.data.prepare tu_berlin --manual_dir ~/manual [--data_dir DIR]
    python -m binflax.data.prepare fashion_mnist --manual_dir /usr/share/... --accept_checksums

Any TFDS dataset: binflax's own builders (``tu_berlin``, ``sketchy``) from their archives,
TFDS's (``mnist``, ``cifar10``, ...) from the files it registers, found in the manual dir
by name. ``--accept_checksums`` accepts files whose checksums differ from TFDS's registry
and records them beside the prepared data (docs/data.md).

Why a command of its own: a multi-process run refuses to prepare a dataset (concurrent
writers would race), and TFDS's ``tfds build`` command line imports apache-beam, which
binflax does not need. This is ``tfds build DATASET --imports binflax.data.tfds_metadata``
with the same missing-file messages as a training run.
"""

from __future__ import annotations

import argparse
import sys

import ml_collections

from binflax.data import recipes, tfds_source
from binflax.data.common import DatasetError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a TFDS dataset name, e.g. tu_berlin or fashion_mnist")
    parser.add_argument("--manual_dir", default=None, help="the manually downloaded files")
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (TFDS's default if unset)")
    parser.add_argument(
        "--accept_checksums",
        action="store_true",
        help="accept manual files whose checksums differ from TFDS's registry",
    )
    args = parser.parse_args(argv)
    config = ml_collections.ConfigDict(
        {
            "dataset": args.dataset,
            "data_dir": args.data_dir,
            "manual_dir": args.manual_dir,
            "accept_checksums": args.accept_checksums,
        }
    )
    recipe = recipes.recipe(args.dataset)
    try:
        builder = tfds_source.prepared_builder(
            config, args.dataset, check_manual=recipe.check_manual, process_count=1
        )
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{k}: {v.num_examples}" for k, v in sorted(builder.info.splits.items()))
    print(f"{args.dataset} is prepared in {builder.data_dir} ({sizes})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
