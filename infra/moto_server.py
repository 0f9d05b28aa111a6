#!/usr/bin/env python3
"""moto's server, with DynamoDB's write atomicity restored and keep-alive connections.

Two ways in which moto's own server (`moto_server`) is not like AWS matter here:

- DynamoDB applies a conditional write atomically: of two concurrent claims on one key,
  exactly one succeeds. moto evaluates the condition and writes the item without a
  lock, so two concurrent claims can both succeed (measured: 2 rounds in 200 with four
  threads). switchyard's exactly-once tests depend on the real guarantee, so this
  launcher serializes moto's DynamoDB writes.
- AWS keeps HTTP connections alive; moto's server (werkzeug's development server)
  answers every request with `Connection: close`, whatever the protocol version, and
  starts a thread per connection. Every SDK call then opens a new TCP connection
  (thousands of sockets left in TIME_WAIT) and pays for it in CPU on both sides, which
  is not what a function pays in AWS. So moto's WSGI application is served by waitress
  instead: HTTP/1.1 keep-alive, a fixed pool of threads (`MOTO_THREADS`, default 64:
  every long-polling ReceiveMessage holds one for its wait).

- moto's SQS works out every attribute of a queue (counting its messages one by one)
  for each message a ReceiveMessage looks at, to read the retention period, and three
  times per name asked of GetQueueAttributes: a receive from a queue of n messages
  costs n², so a backlog of 500 slowed every call on the endpoint to a second. The
  same answers are computed here once (the retention period straight from the queue).

Same arguments as moto_server: `-H 127.0.0.1 -p 4566`.
"""

import argparse
import functools
import os
import signal
import sys
import threading

from moto.core.utils import unix_time
from moto.dynamodb.models import DynamoDBBackend
from moto.sqs.models import SQSBackend

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


def _retained(self, queue_name, message):
    queue = self.get_queue(queue_name)
    return int(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time()


def _queue_attributes(self, queue_name, attribute_names):
    queue = self.get_queue(queue_name)
    valid = queue.BASE_ATTRIBUTES + queue.FIFO_ATTRIBUTES + queue.KMS_ATTRIBUTES
    if not attribute_names or any(n not in valid for n in attribute_names):
        # "All", nothing, or a name moto refuses: moto's own answer (or error).
        return _moto_queue_attributes(self, queue_name, attribute_names)
    known = queue.attributes
    return {n: known[n] for n in attribute_names if known.get(n) is not None}


_moto_queue_attributes = SQSBackend.get_queue_attributes
SQSBackend.is_message_valid_based_on_retention_period = _retained
SQSBackend.get_queue_attributes = _queue_attributes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)))
    args = parser.parse_args(argv)
    # moto builds some URLs (queue URLs among them) from the port it serves on.
    os.environ["MOTO_PORT"] = str(args.port)

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from waitress import serve

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    if os.environ.get("MOTO_CLOSE_CONNECTIONS") == "1":
        # moto's own server (werkzeug's, HTTP/1.0: every answer closes its
        # connection), only to measure what reconnecting costs the functions.
        from werkzeug.serving import run_simple

        return run_simple(args.host, args.port, app, threaded=True)
    serve(
        app,
        host=args.host,
        port=args.port,
        threads=int(os.environ.get("MOTO_THREADS", "64")),
        # Idle keep-alive connections stay open (a pooled connection closed by the
        # server just as a client reuses it fails that call).
        channel_timeout=3600,
        connection_limit=2000,
        ident=None,
        # Tracebacks of moto's own errors are what a developer needs to see locally.
        expose_tracebacks=True,
        _quiet=True,
    )


if __name__ == "__main__":
    sys.exit(main())
