"""The one error type the data layer raises for anything the user can fix (missing, unreadable, corrupt data)."""
from __future__ import annotations


class DatasetError(RuntimeError):
    """A data set is missing, unreadable or malformed; the message says where and how to fix it."""
