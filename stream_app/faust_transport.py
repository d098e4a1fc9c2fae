"""Faust's Kafka transport, with the consumer's fetch wait as a setting.

Faust fixes `fetch_max_wait_ms` at 1500 ms. Apache Kafka answers a fetch as soon as one byte is
there (fetch.min.bytes=1), so there the wait only bounds polls of idle partitions. The embedded
broker holds every fetch for the full wait, so on it the wait *is* the end-to-end latency of
every event. The product's wait is BROKER_FETCH_MAX_WAIT_MS (20 ms by default).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver


def transport_class(fetch_max_wait_ms: int) -> type[driver.Transport]:
    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: driver.Transport) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read by AIOKafkaConsumer.start()
            return consumer

    class Consumer(driver.Consumer):
        def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


class StreamApp(faust.App):
    """A Faust app whose Kafka consumer fetches with the product's fetch wait."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        self._transport_class = transport_class(fetch_max_wait_ms)
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return self._transport_class(self.conf.broker_consumer, self)
