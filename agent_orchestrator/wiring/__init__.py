"""The service's parts, each built by a small function from Settings and the parts it needs.

Every builder takes its dependencies by keyword and returns its part; none connects (that is
``Service.start``). The composition root (``service``) only calls them in order and connects
their results, so a part can be swapped by building it differently.

- ``parts``: pools, repositories, stores, queues, the broker, the sweeper, the outbox relay.
- ``routers``: the command areas and their router, the durable jobs, discovery.
"""
