"""Errors the user can fix. The command line prints these as one message, no traceback;
any other exception is a bug and keeps its traceback. Torch-free, import-free.

Every error caused by the user's input or environment derives from `UserError`; its
message names the file, key or setting and says how to fix it. The builtin second base
of some subclasses lets library callers catch them as the builtin they resemble.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input or environment; the message says what and how to fix it."""


class SettingsError(UserError, ValueError):
    """A bad setting (params.yaml, --settings, --set); the message names the key."""


class UsageError(UserError, ValueError):
    """A command called with arguments that do not fit together."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the step needs is not there; the message says what makes it."""


class AlreadyExistsError(UserError, FileExistsError):
    """Something the user has would be replaced; the message says how to allow it."""


class BadFileError(UserError, ValueError):
    """A file exists but cannot be read (damaged, wrong format)."""
