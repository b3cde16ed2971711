"""The one base class of every error a user can fix, so the command line can tell them apart.

Why one class: a missing data set, a bad config value, a plan that names a layer the
network lacks, a damaged export file or a workdir with nothing trained in it are not
bugs. ``main.py`` prints them as one line, ``binflax: <message>``, and exits with status
1; anything else is a bug and keeps its traceback. Each part of binflax raises its own
subclass (:class:`ConfigError` here, ``PlanError``, ``DatasetError``, ``ExportError``,
``CheckpointError`` beside the code they guard), and each message says what to change.

    >>> issubclass(ConfigError, UserError)
    True
"""


class UserError(Exception):
    """An error the user can fix; its message says how."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work; the message names the field (``config.a.b``)."""
