"""Dead letters on a real broker: a worker's dead letters carry their error in Kafka headers
(read with librdkafka, as any consumer would), and `stream-app dead-letters replay` re-sends the
chosen ones to their source partition exactly once. The tests without a broker check the header
and payload helpers the command relies on."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple, Optional

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas import DeadLetter
from stream_app import dead_letters_cli
from stream_app.deadletter import MAX_HEADER_MESSAGE_BYTES, Header, app_version, build_dead_letter, kafka_headers, \
    original_key, original_payload
from stream_app.decoding import DecodeFailure, ErrorCode
from stream_app.settings import Settings
from tests.integration.kafka_clients import produce

READINGS = "sensor-readings"
DEAD_LETTERS = "dead-letters"


def reading(event_id: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "machine_id": "m-1", "ts": "2026-03-01T00:00:00Z", "sensors": {"vibration_rms": 2.0},
            **fields}


class Stored(NamedTuple):
    partition: int
    offset: int
    key: Optional[bytes]
    value: bytes
    headers: dict[str, bytes]


def read(bootstrap: str, topic: str, count: int, timeout: float = 30.0, settle: float = 1.0) -> list[Stored]:
    """The topic's records with their headers, once `count` came (or `timeout`), then `settle` more."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-headers", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[Stored] = []
        deadline, settled = time.monotonic() + timeout, None
        while time.monotonic() < (settled or deadline):
            for msg in consumer.consume(500, 0.2):
                if not msg.error():
                    records.append(Stored(msg.partition(), msg.offset(), msg.key(), msg.value(), dict(msg.headers() or [])))
            if settled is None and len(records) >= count:
                settled = time.monotonic() + settle
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def replay(settings: Settings, *argv: str) -> str:
    parser = argparse.ArgumentParser(prog="stream-app")
    dead_letters_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dead-letters", "replay", *argv])
    out = io.StringIO()
    assert args.func(args, settings, out) == 0
    return out.getvalue()


def replays(bootstrap: str) -> list[Stored]:
    return [r for r in read(bootstrap, READINGS, 1, timeout=3, settle=0.5) if Header.REPLAY_OF in r.headers]


# --- through a worker ------------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.slow
def test_a_workers_dead_letters_carry_headers_and_are_replayed_once(broker, start_worker, tmp_path: Path) -> None:
    gateway = [reading("gw-0"), reading("gw-1", sensors={}), reading("gw-2")]
    bad = {b"m-1": json.dumps(reading("x1", sensors={"vibration_rms": "hot"})).encode(),
           b"m-2": json.dumps({k: v for k, v in reading("x2").items() if k != "machine_id"}).encode(),
           b"m-3": b"{not json", b"gw": json.dumps(gateway).encode()}
    worker = start_worker(tmp_path / "empty_model_store")
    produce(broker.bootstrap, READINGS, [*bad.items(), (b"m-4", json.dumps(reading("ok")).encode())])

    deadline = time.monotonic() + 120
    while len(stored := read(broker.bootstrap, DEAD_LETTERS, 4, timeout=5, settle=0)) < 4 and time.monotonic() < deadline:
        assert worker.alive(), worker.log()[-3000:]
    letters = {r.key: (DeadLetter.model_validate_json(r.value), r.headers) for r in stored}
    assert set(letters) == set(bad), worker.log()[-3000:]
    sources = {r.key: r for r in read(broker.bootstrap, READINGS, 5)}
    for key, (letter, headers) in letters.items():
        source = sources[key]
        assert headers[Header.ID].decode() == letter.dead_letter_id
        code = "not_json" if key == b"m-3" else "invalid_fields"
        assert headers[Header.ERROR_CODE].decode() == letter.error_code == code
        assert letter.error_message.encode().startswith(headers[Header.ERROR_MESSAGE])
        assert headers[Header.SOURCE_TOPIC] == READINGS.encode()
        assert int(headers[Header.SOURCE_PARTITION]) == source.partition
        assert int(headers[Header.SOURCE_OFFSET]) == source.offset
        assert headers[Header.PAYLOAD_SHA256].decode() == hashlib.sha256(bad[key]).hexdigest()
        assert headers.get(Header.ITEM_INDEX) == (b"1" if key == b"gw" else None)
        assert headers[Header.APP_VERSION].decode() == app_version()
    worker.stop()  # nothing consumes the replays: what the source topic holds is what was sent

    settings = Settings(kafka_bootstrap_servers=broker.bootstrap)
    chosen = {letters[k][0].dead_letter_id for k in (b"m-1", b"m-2", b"gw")}
    out = replay(settings, "--code", "invalid_fields", "--dry-run")
    assert out.splitlines()[-1] == "dead-letters replay (dry run): 3 selected, 3 would be re-sent, 0 skipped"
    assert {line.split()[2] for line in out.splitlines() if line.startswith("would re-send")} == chosen
    assert replays(broker.bootstrap) == []

    out = replay(settings, "--code", "invalid_fields")
    assert out.strip() == "dead-letters replay: 3 selected, 3 re-sent, 0 skipped"
    again = {r.headers[Header.REPLAY_OF].decode(): r for r in replays(broker.bootstrap)}
    assert set(again) == chosen
    for key in (b"m-1", b"m-2", b"gw"):
        letter = letters[key][0]
        sent = again[letter.dead_letter_id]
        assert (sent.key, sent.partition) == (key, sources[key].partition)
        assert sent.value == (bad[key] if key != b"gw" else json.dumps(gateway[1], separators=(",", ":")).encode())

    out = replay(settings, "--code", "invalid_fields")
    assert out.strip() == "dead-letters replay: 3 selected, 0 re-sent, 3 skipped (3 already replayed)"
    assert len(replays(broker.bootstrap)) == 3


# --- selection, and what cannot be replayed ----------------------------------------------------------
class FaustLikeProducer:
    """Faust's producer.send signature over aiokafka: what the agents' Outbox calls."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer

    def _ensure_producer(self) -> Any:  # Faust's accessor for its aiokafka producer: bulk sends use it
        return self.producer

    async def send(self, topic: str, key: Optional[bytes], value: bytes, partition: Optional[int], _ts: Any,
                   headers: Any) -> Any:
        return await self.producer.send(topic, value, key=key, partition=partition, headers=headers)


async def publish(bootstrap: str, letters: list[DeadLetter], garbage: bytes) -> None:
    """Onto the dead-letter topic through the agents' Outbox (headers included), and one record
    that is no dead letter."""
    from aiokafka import AIOKafkaProducer

    from agents.publish import Outbox

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        outbox = Outbox(FaustLikeProducer(producer))
        await outbox.send_many([(DEAD_LETTERS, letter.key, letter) for letter in letters])
        await outbox.flush()
        await producer.send_and_wait(DEAD_LETTERS, garbage)
    finally:
        await producer.stop()


@pytest.mark.integration
def test_replay_selects_by_id_code_topic_time_and_limit_and_skips_truncated_payloads(broker) -> None:
    binary, big = b"\xff\xfe\x00binary", b"{" + b"x" * 5000
    produce(broker.bootstrap, READINGS, [(b"\x00\xffk", binary), (b"big", big), (b"a", b"{a"), (b"b", b"{b")])
    sources = {r.key: r for r in read(broker.bootstrap, READINGS, 4)}

    def letter(key: bytes, code: str, **kwargs: Any) -> DeadLetter:
        s = sources[key]
        return build_dead_letter(DecodeFailure(code, f"{code}: ..."), topic=READINGS, partition=s.partition, offset=s.offset,
                                 key=key, raw=s.value, **kwargs)

    old = datetime.now(timezone.utc) - timedelta(hours=3)
    letters = [letter(b"\x00\xffk", ErrorCode.NOT_UTF8), letter(b"big", ErrorCode.NOT_JSON, max_payload_bytes=100),
               letter(b"a", ErrorCode.NOT_JSON).model_copy(update={"failed_at": old}), letter(b"b", ErrorCode.NOT_JSON)]
    asyncio.run(publish(broker.bootstrap, letters, garbage=b"not a dead letter"))
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap)
    binary_id, big_id, a_id, b_id = (d.dead_letter_id for d in letters)

    out = replay(settings, "--id", binary_id, "--topic", READINGS)
    assert out.splitlines()[-1] == ("dead-letters replay: 1 selected, 1 re-sent, 0 skipped; "
                                    "1 records of the topic were no dead letter")
    (sent,) = replays(broker.bootstrap)
    assert (sent.key, sent.value, sent.partition) == (b"\x00\xffk", binary, sources[b"\x00\xffk"].partition)

    out = replay(settings, "--code", "not_json", "--since", (old + timedelta(minutes=1)).isoformat(), "--dry-run")
    assert f"cannot replay {big_id} (not_json, {READINGS}" in out and "payload truncated" in out
    assert [line.split()[2] for line in out.splitlines() if line.startswith("would re-send")] == [b_id]
    assert "2 selected, 1 would be re-sent, 1 skipped (1 payload truncated)" in out

    out = replay(settings, "--code", "not_json", "--limit", "1")
    assert "3 selected, 1 re-sent, 2 skipped (1 over --limit, 1 payload truncated)" in out
    assert {r.headers[Header.REPLAY_OF].decode() for r in replays(broker.bootstrap)} == {binary_id, a_id}  # oldest first
    out = replay(settings, "--topic", "other-topic")
    assert "0 selected, 0 re-sent, 0 skipped" in out


# --- without a broker ------------------------------------------------------------------------------
def test_headers_name_the_error_and_origin_and_cut_a_long_message_on_a_character() -> None:
    raw = json.dumps([reading("a"), reading("b", sensors={})]).encode()
    failure = DecodeFailure(ErrorCode.INVALID, "é" * 1000, item_index=1, item=reading("b", sensors={}))
    letter = build_dead_letter(failure, topic=READINGS, partition=3, offset=42, key=b"gw", raw=raw)
    headers = dict(kafka_headers(letter))
    assert headers[Header.ERROR_MESSAGE] == ("é" * (MAX_HEADER_MESSAGE_BYTES // 2)).encode()
    assert (headers[Header.SOURCE_PARTITION], headers[Header.SOURCE_OFFSET], headers[Header.ITEM_INDEX]) == (b"3", b"42", b"1")
    assert headers[Header.PAYLOAD_SHA256] == hashlib.sha256(raw).hexdigest().encode()
    unplaced = build_dead_letter(DecodeFailure(ErrorCode.NOT_JSON, "x"), topic=READINGS, partition=None, offset=None,
                                 key=None, raw=b"{")
    assert {Header.SOURCE_PARTITION, Header.SOURCE_OFFSET, Header.ITEM_INDEX}.isdisjoint(dict(kafka_headers(unplaced)))


def test_a_scorer_rejection_of_one_gateway_element_keeps_and_replays_that_element_alone() -> None:
    items = [reading("a"), reading("b", market="ZZ"), reading("c")]
    raw = json.dumps(items).encode()
    letter = build_dead_letter(DecodeFailure("unknown_market", "no such market", item_index=1), topic="sales-events",
                               partition=0, offset=7, key=b"k", raw=raw)
    assert json.loads(letter.payload) == items[1] and json.loads(original_payload(letter)) == items[1]
    whole = letter.model_copy(update={"payload": raw.decode()})  # as written before the element was kept alone
    assert json.loads(original_payload(whole)) == items[1]


def test_binary_payloads_and_keys_come_back_byte_for_byte_and_cut_keys_are_marked() -> None:
    letter = build_dead_letter(DecodeFailure(ErrorCode.NOT_UTF8, "x"), topic=READINGS, partition=0, offset=1,
                               key=b"\x00\xff", raw=b"\xff\x00")
    assert (letter.key_encoding, letter.payload_encoding) == ("base64", "base64")
    assert (original_key(letter), original_payload(letter)) == (b"\x00\xff", b"\xff\x00")
    assert base64.b64decode(letter.key or "") == b"\x00\xff"
    long_key = build_dead_letter(DecodeFailure(ErrorCode.NOT_JSON, "x"), topic=READINGS, partition=0, offset=2,
                                 key=b"k" * 5000, raw=b"{")
    assert long_key.key_truncated and dead_letters_cli._cannot_replay(long_key, {READINGS: {0}}) == "key truncated"


def test_since_reads_a_time_without_zone_as_utc_and_refuses_what_is_no_time() -> None:
    parser = argparse.ArgumentParser()
    dead_letters_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["dead-letters", "replay", "--since", "2026-03-01T12:00", "--id", "a", "--id", "b"])
    assert args.since == datetime(2026, 3, 1, 12, tzinfo=timezone.utc) and args.ids == ["a", "b"]
    with pytest.raises(SystemExit):
        parser.parse_args(["dead-letters", "replay", "--since", "yesterday"])
