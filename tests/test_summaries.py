"""binflax.summaries writes event files that TensorFlow's own reader parses back."""

from binflax.data.common import tensorflow
from binflax.summaries import ScalarWriter


def test_scalars_read_back_with_tensorflow(tmp_path):
    writer = ScalarWriter(tmp_path / "tb")
    writer.write_scalars(10, {"train_loss": 0.5, "train_accuracy": 0.75})
    writer.write_scalars(20, {"test_top1": 91.25})
    writer.close()
    (events,) = (tmp_path / "tb").glob("events.out.tfevents.*")
    tf = tensorflow()  # the independent reader: TensorFlow's TFRecord and Event parsing
    read = [
        tf.compat.v1.Event.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(str(events))  # checks every record's CRC
    ]
    assert read[0].file_version == "brain.Event:2"
    scalars = [(e.step, v.tag, v.simple_value) for e in read[1:] for v in e.summary.value]
    assert scalars == [
        (10, "train_loss", 0.5),
        (10, "train_accuracy", 0.75),
        (20, "test_top1", 91.25),
    ]


def test_a_disabled_writer_writes_nothing(tmp_path):
    writer = ScalarWriter(tmp_path / "tb", enabled=False)
    writer.write_scalars(1, {"loss": 1.0})
    writer.close()
    assert not (tmp_path / "tb").exists()
