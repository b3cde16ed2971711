"""TFDS access for the pipelines: prepare-or-explain, split ranges, encoded records.

Why records stay encoded here: the pipelines shuffle, shard and (on resume) skip
examples *before* decoding, so skipping the first ``k`` examples of an epoch costs
reading their bytes, never decoding or augmenting them.

A :class:`Span` is a contiguous range of a prepared TFDS split; ``train``, ``holdout``
and a carved ``test`` are spans of TFDS's ``train``. TFDS writes examples in an order
shuffled by key hash at preparation, so a contiguous range is a random subset.
:meth:`Span.shard` cuts a span into ``process_count`` contiguous, disjoint pieces whose
union is the span (sizes differ by at most one).

A dataset that is not prepared is built here (TFDS ``download_and_prepare``): binflax's
builders from the archives in the manual dir, TFDS's own from the files it registers,
found in the manual dir by name or else downloaded (once each host has accepted a
connection: :mod:`binflax.data.download_probe`); otherwise the :class:`DatasetError`
says which files are expected where. A manual file whose checksum differs from TFDS's
registry (Debian's Fashion-MNIST, whose gzip wrappers were recompressed) is refused
unless ``config.accept_checksums``; the accepted checksums are recorded beside the
prepared data (:data:`ACCEPTED_CHECKSUMS`), never in the installed TFDS package.
[choice] With several processes the dataset must be prepared beforehand
(``python -m binflax.data.prepare``, or one single-process run): concurrent writers
would race.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import tarfile
from collections.abc import Callable

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core.download import checksums
from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

from binflax.data import download_probe, tfds_metadata
from binflax.data.common import DatasetError, tensorflow

tf = tensorflow()

Records = tf.data.Dataset  # {"image": encoded bytes (tf.string), "label": tf.int64}


@dataclasses.dataclass(frozen=True)
class Span:
    """Examples ``[start, stop)`` of the TFDS split ``split``."""

    split: str
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def shard(self, index: int, count: int) -> Span:
        """This process's contiguous piece; the ``count`` pieces partition the span."""
        n = len(self)
        return Span(
            self.split, self.start + index * n // count, self.start + (index + 1) * n // count
        )

    @property
    def tfds_split(self) -> str:
        return f"{self.split}[{self.start}:{self.stop}]"


def _manual_dir(config, builder: tfds.core.DatasetBuilder) -> str:
    """``config.manual_dir``, else TFDS's default ``<data_dir>/downloads/manual``."""
    if config.manual_dir:
        return str(config.manual_dir)
    return str(_data_root(builder) / "downloads" / "manual")


def _data_root(builder: tfds.core.DatasetBuilder) -> epath.Path:
    """The TFDS data dir that holds ``<name>/<version>/`` (``builder.data_dir``)."""
    return epath.Path(builder.data_dir).parent.parent


def expected_files(builder: tfds.core.DatasetBuilder) -> list[str]:
    """The file names TFDS downloads for ``builder`` (and looks for in a manual dir)."""
    return sorted(info.filename for info in (builder.url_infos or {}).values() if info.filename)


def prepared_builder(
    config,
    name: str,
    *,
    check_manual: Callable[[str], object] | None,
    process_count: int,
) -> tfds.core.DatasetBuilder:
    """The TFDS builder for ``name``, preparing the dataset first if needed.

    ``check_manual(manual_dir)`` raises :class:`DatasetError` when the manually
    downloaded files of binflax's own builders are missing. TFDS's builders take their
    registered files from the manual dir when they are there, else download them.
    """
    builder = tfds_metadata.builder(name, config.data_dir)
    # what builder.is_prepared() checks, without its warning about the empty version folder
    if (epath.Path(builder.data_dir) / "dataset_info.json").exists():
        return builder
    manual_dir = _manual_dir(config, builder)
    if process_count > 1:
        raise DatasetError(
            f"{name} is not prepared in {builder.data_dir}. Prepare it once before a "
            f"multi-process run: python -m binflax.data.prepare {name} "
            f"--data_dir {_data_root(builder)} "
            f"--manual_dir {manual_dir}"
        )
    if check_manual is not None:
        check_manual(manual_dir)
    files = expected_files(builder)
    missing = [f for f in files if not (epath.Path(manual_dir) / f).exists()]
    if config.manual_dir and missing:  # the user said where the files are: no download
        raise DatasetError(
            f"{name}: {', '.join(missing)} not found in {manual_dir}; TFDS prepares "
            f"{name} from {', '.join(files)}"
        )
    urls = [url for url, info in (builder.url_infos or {}).items() if info.filename in missing]
    why = download_probe.unreachable(urls)
    if why is not None:
        raise _not_downloadable(name, builder, missing, manual_dir, why)
    accepted = accepted_checksums(builder, manual_dir) if config.get("accept_checksums") else {}
    download_config = tfds.download.DownloadConfig(
        manual_dir=manual_dir, compute_stats=tfds.download.ComputeStatsMode.SKIP
    )
    try:
        with _verifying_against(builder, accepted):
            builder.download_and_prepare(download_config=download_config)
    except NonMatchingChecksumError as err:
        found = re.search(r"downloaded to (\S+),", str(err))
        raise DatasetError(
            f"{found.group(1) if found else manual_dir} differs from the checksum TFDS "
            f"registers for {name}; if it is the file you meant, accept it with "
            "--accept_checksums (config.accept_checksums=True)"
        ) from None
    except (tfds.download.DownloadError, OSError) as err:
        if not missing:
            raise DatasetError(
                f"preparing {name} from {manual_dir} into {builder.data_dir} failed: {err}"
            ) from err
        raise _not_downloadable(name, builder, missing, manual_dir, type(err).__name__) from None
    except (AssertionError, ValueError, tarfile.TarError, tf.errors.OpError) as err:
        raise DatasetError(
            f"preparing {name} from {manual_dir} into {builder.data_dir} failed: {err}"
        ) from err
    if accepted:
        checksums.save_url_infos(epath.Path(builder.data_dir) / ACCEPTED_CHECKSUMS, accepted)
    return builder


def _not_downloadable(
    name: str, builder: tfds.core.DatasetBuilder, missing: list[str], manual_dir: str, why: str
) -> DatasetError:
    """The files TFDS could not download (``why``: a few words) and where to put them."""
    return DatasetError(
        f"{name} is not prepared in {builder.data_dir} and could not be downloaded "
        f"({why}); put {', '.join(missing)} in {manual_dir} "
        "(or give their folder as --config.manual_dir=DIR)"
    )


ACCEPTED_CHECKSUMS = "accepted_checksums.tsv"  # beside dataset_info.json, in TFDS's format


def accepted_checksums(builder: tfds.core.DatasetBuilder, manual_dir: str) -> dict:
    """``{url: UrlInfo}`` of the manual files as they are, for the files that TFDS
    registers (the user accepted them: ``config.accept_checksums``)."""
    accepted = {}
    for url, info in (builder.url_infos or {}).items():
        path = epath.Path(manual_dir) / info.filename
        if info.filename and path.exists():
            accepted[url] = checksums.compute_url_info(path)
    return accepted


@contextlib.contextmanager
def _verifying_against(builder: tfds.core.DatasetBuilder, accepted: dict):
    """TFDS verifies ``accepted``'s checksums in place of its registry's, for this build.

    Why not TFDS's own ``register_checksums``: it writes the new checksums into the
    installed package's checksum file, changing what every later TFDS user of the
    environment verifies against. Here the download manager of this one build is given
    the accepted checksums instead, and nothing outside the data dir is written.
    """
    if not accepted:
        yield
        return
    make = builder._make_download_manager

    def make_accepting(*args, **kwargs):
        manager = make(*args, **kwargs)
        manager._url_infos = {**manager._url_infos, **accepted}
        return manager

    builder._make_download_manager = make_accepting
    try:
        yield
    finally:
        del builder._make_download_manager


def split_size(builder: tfds.core.DatasetBuilder, split: str) -> int:
    if split not in builder.info.splits:
        raise DatasetError(
            f"{builder.name} in {builder.data_dir} has no {split!r} split "
            f"(it has {sorted(builder.info.splits)}); prepare it again with every archive"
        )
    return builder.info.splits[split].num_examples


def _empty() -> Records:
    return tf.data.Dataset.from_tensor_slices(
        {"image": tf.constant([], tf.string), "label": tf.constant([], tf.int64)}
    )


def read(
    builder: tfds.core.DatasetBuilder, span: Span, *, shuffle_seed: int | None = None
) -> Records:
    """The span's records, undecoded; file order shuffled by ``shuffle_seed`` if given."""
    if not len(span):
        return _empty()
    ds = builder.as_dataset(
        split=span.tfds_split,
        shuffle_files=shuffle_seed is not None,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed, try_autocache=False),
    )
    return ds.map(lambda ex: {"image": ex["image"], "label": ex["label"]})


def in_memory(records: Records) -> Records:
    """``records`` held in host memory, encoded, in their order (``config.cache``)."""
    images, labels = [], []
    for example in records.as_numpy_iterator():
        images.append(example["image"])
        labels.append(example["label"])
    if not images:
        return _empty()
    return tf.data.Dataset.from_tensor_slices(
        {"image": np.array(images, dtype=object), "label": np.array(labels, np.int64)}
    )
