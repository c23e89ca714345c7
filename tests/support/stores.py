"""Reading the service's JetStream stores in tests."""

from nats.js.errors import NoKeysError
from nats.js.kv import KeyValue


async def kv_keys(kv: KeyValue, prefix: str = "") -> list[str]:
    """The live keys of ``kv`` that start with ``prefix``, sorted.

    nats-py's ``KeyValue.keys()`` raises ``NoKeysError`` for a bucket with no live key, which
    is an empty list here: the bucket a test reads is shared, so whether it is empty depends on
    what other tests left in it.
    """
    try:
        keys = await kv.keys()
    except NoKeysError:
        return []
    return sorted(k for k in keys if k.startswith(prefix))
