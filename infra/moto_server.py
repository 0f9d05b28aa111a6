#!/usr/bin/env python3
"""moto's server, with DynamoDB's write atomicity restored.

DynamoDB applies a conditional write atomically: of two concurrent claims on one key,
exactly one succeeds. moto's threaded server evaluates the condition and writes the
item without a lock, so two concurrent claims can both succeed (measured: 2 rounds in
200 with four threads). switchyard's exactly-once tests depend on the real guarantee,
so this launcher serializes moto's DynamoDB writes and then runs moto's own server
with the arguments given (`-H 127.0.0.1 -p 4566`).
"""

import functools
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_lock = threading.RLock()


def _serialized(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _lock:
            return method(*args, **kwargs)

    return wrapper


for _name in _WRITES:
    if hasattr(DynamoDBBackend, _name):
        setattr(DynamoDBBackend, _name, _serialized(getattr(DynamoDBBackend, _name)))

if __name__ == "__main__":
    sys.exit(main())
