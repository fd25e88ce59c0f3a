"""moto's standalone server for the local stack, with DynamoDB's operations serialized.

moto's server answers requests on threads, and its DynamoDB backend does not isolate them: a
TransactWriteItems that is cancelled restores a copy of the tables taken when it began, undoing
what other requests wrote meanwhile, and a conditional update reads and writes without a lock.
DynamoDB itself makes each request atomic and serializes conflicting ones, which is what the
placement of tenants in cells relies on. This runs moto's own server with one lock around every
DynamoDB item operation (`cargo xtask stack up` starts it with the stack's venv Python).
"""

import sys
import threading

from moto.dynamodb.models import DynamoDBBackend

_LOCK = threading.RLock()
_OPERATIONS = (
    "put_item",
    "update_item",
    "delete_item",
    "get_item",
    "query",
    "scan",
    "transact_write_items",
    "transact_get_items",
)


def _serialized(method):
    def locked(*args, **kwargs):
        with _LOCK:
            return method(*args, **kwargs)

    locked.__wrapped__ = method
    return locked


for _name in _OPERATIONS:
    if hasattr(DynamoDBBackend, _name):
        setattr(DynamoDBBackend, _name, _serialized(getattr(DynamoDBBackend, _name)))

from moto.server import main  # noqa: E402  (after the patch, as it imports the backends)

if __name__ == "__main__":
    main(sys.argv[1:])
