"""The one error type the data layer raises for anything the user can fix (missing, unreadable, corrupt data)."""
from __future__ import annotations


class DatasetError(RuntimeError):
    """A data set is missing, unreadable or malformed; the message says where and how to fix it.

    Raised in a DataLoader worker, it reaches the main process re-built from the worker's whole traceback
    (torch's `ExceptionWrapper`); the message then goes back to the original one line and the traceback is kept
    in `worker_traceback`.
    """

    def __init__(self, message: str = ""):
        self.worker_traceback = None
        if message.startswith("Caught ") and "\nOriginal Traceback" in message:
            self.worker_traceback = message
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]  # "lsnet.data.errors.DatasetError: ..."
        super().__init__(message)
