"""`stream-app dead-letters replay`: re-send chosen dead letters to their source topic once the
cause is fixed.

The dead-letter topic is read from its beginning to the end it had when the command started.
The letters every given option matches (`--code`, `--topic`, `--since`, `--id`) are re-sent,
oldest first and at most `--limit`: each one's payload bytes (the whole source message, or a
gateway array's bad element alone) with the source message's key, to the source topic and the
partition it came from, with the header `dlq.replay.id` naming the dead letter. A truncated
payload (or key) cannot be re-sent as it was: it is reported and skipped.

Never twice: before sending, each source partition involved is read from the oldest chosen
letter's offset to its end, and letters a `dlq.replay.id` header there already names are
skipped. The source topic is its own replay log: nothing to create, secure or compact, and a
run that stopped half-way leaves exactly what it re-sent on record. A replayed message that
fails again is a new dead letter (a new offset, a new id), which a later run may replay.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Iterable, Optional, TextIO

from schemas import DeadLetter
from stream_app.deadletter import Header, original_key, original_payload
from stream_app.settings import Settings

STALL_S = 30.0  # a read without a record for this long, short of the end, is given up


def _since(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time, e.g. 2026-03-01T12:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)  # naive means UTC


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("dead-letters",
                                   help="re-send dead letters to their source topic once the cause is fixed")
    sub = parser.add_subparsers(dest="dead_letters_command", required=True)
    p = sub.add_parser("replay", help="re-send chosen dead letters (each at most once) to their source topic",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--code", help="only dead letters with this error code, e.g. invalid_fields")
    p.add_argument("--topic", help="only dead letters of this source topic")
    p.add_argument("--since", type=_since, metavar="ISO_TIME",
                   help="only dead letters written at or after this time (ISO 8601; no zone: UTC)")
    p.add_argument("--id", action="append", dest="ids", metavar="DEAD_LETTER_ID",
                   help="only this dead letter (repeatable)")
    p.add_argument("--limit", type=_positive, metavar="N", help="re-send at most this many, oldest first")
    p.add_argument("--dry-run", action="store_true", help="print what would be re-sent; send nothing")
    p.set_defaults(func=run)
    return parser


@dataclass
class Outcome:
    selected: int = 0
    sent: list[DeadLetter] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> dead letters
    unreadable: int = 0  # records of the dead-letter topic that are no dead letter

    def summary(self, dry_run: bool) -> str:
        verb = "would be re-sent" if dry_run else "re-sent"
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        line = (f"dead-letters replay{' (dry run)' if dry_run else ''}: {self.selected} selected, "
                f"{len(self.sent)} {verb}, {sum(self.skipped.values())} skipped" + (f" ({reasons})" if reasons else ""))
        return line + (f"; {self.unreadable} records of the topic were no dead letter" if self.unreadable else "")


def run(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout) -> int:
    outcome = asyncio.run(replay(args, settings, out))
    print(outcome.summary(args.dry_run), file=out)
    return 0


def matches(letter: DeadLetter, args: argparse.Namespace) -> bool:
    return ((args.code is None or letter.error_code == args.code)
            and (args.topic is None or letter.source_topic == args.topic)
            and (args.since is None or letter.failed_at >= args.since)
            and (not args.ids or letter.dead_letter_id in args.ids))


async def replay(args: argparse.Namespace, settings: Settings, out: TextIO) -> Outcome:
    from stream_app.kafka_security import client_config
    from stream_app.tail import require_topic

    topic = settings.topics.dead_letters
    await require_topic(settings, topic)  # no broker, a refused login, no such topic: one line
    config = client_config(settings)
    outcome = Outcome()
    chosen: dict[str, DeadLetter] = {}  # by id: at-least-once delivery may have written one twice
    async for records in read_to_end(config, topic):
        for record in records:
            try:
                letter = DeadLetter.model_validate_json(record.value or b"")
            except ValueError:
                outcome.unreadable += 1
                continue
            if matches(letter, args):
                chosen.setdefault(letter.dead_letter_id, letter)
    outcome.selected = len(chosen)
    if not chosen:
        return outcome

    candidates = []
    existing = await partitions(config, {letter.source_topic for letter in chosen.values()})
    for letter in sorted(chosen.values(), key=lambda d: d.failed_at):
        reason = _cannot_replay(letter, existing)
        if reason:
            outcome.skipped[reason] += 1
            print(f"cannot replay {_where(letter)}: {reason}", file=out)
        else:
            candidates.append(letter)
    replayed = await replayed_ids(config, candidates)
    for letter in candidates:
        if letter.dead_letter_id in replayed:
            outcome.skipped["already replayed"] += 1
        elif args.limit is not None and len(outcome.sent) >= args.limit:
            outcome.skipped["over --limit"] += 1
        else:
            outcome.sent.append(letter)
    if args.dry_run:
        for letter in outcome.sent:
            print(f"would re-send {_where(letter)}: {len(original_payload(letter))} bytes", file=out)
    else:
        await send(config, outcome.sent)
    return outcome


def _where(letter: DeadLetter) -> str:
    item = f" item {letter.item_index}" if letter.item_index is not None else ""
    return (f"{letter.dead_letter_id} ({letter.error_code}, {letter.source_topic}[{letter.partition}]"
            f"@{letter.offset}{item})")


def _cannot_replay(letter: DeadLetter, existing: dict[str, set[int]]) -> Optional[str]:
    if letter.payload_truncated:
        return "payload truncated"
    if letter.key_truncated:
        return "key truncated"
    if letter.partition is None or letter.offset is None:
        return "no source position"
    if letter.partition not in existing.get(letter.source_topic, ()):
        return "source partition missing"  # on this cluster: where would its replays be found?
    return None


async def partitions(config: Any, topics: Iterable[str]) -> dict[str, set[int]]:
    """The partitions of each of `topics` that exist (none for a topic that does not)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(**config.aiokafka(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        return {topic: set(consumer.partitions_for_topic(topic) or ()) for topic in topics}
    finally:
        await consumer.stop()


async def read_to_end(config: Any, topic: Optional[str] = None,
                      start: Optional[dict[tuple[str, int], int]] = None) -> AsyncIterator[list[Any]]:
    """The records (aiokafka's) of `topic` from its beginning, or of the partitions in `start`
    ((topic, partition) -> offset) from there, a fetch at a time, up to the end each partition had
    when the read began (stream_app.kafka_io.read_to_end). A read that stalls stops the command
    with one line: replaying from half a topic could send a letter twice."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from stream_app.errors import Problem
    from stream_app.kafka_io import ReadStalled
    from stream_app.kafka_io import read_to_end as read_partitions

    consumer = AIOKafkaConsumer(**config.aiokafka(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        if start is None:
            await consumer.topics()  # metadata, for the partition count
            offsets: dict[Any, Optional[int]] = {TopicPartition(topic, p): None
                                                 for p in sorted(consumer.partitions_for_topic(topic) or ())}
        else:
            offsets = {TopicPartition(t, p): offset for (t, p), offset in start.items()}
        try:
            async for records in read_partitions(consumer, offsets, STALL_S):
                yield records
        except ReadStalled as exc:
            names = ", ".join(sorted({tp.topic for tp in exc.short}))
            raise Problem(f"reading {names} stalled short of its end", "check the broker and run the command again") from None
    finally:
        await consumer.stop()


async def replayed_ids(config: Any, letters: Iterable[DeadLetter]) -> set[str]:
    """Ids of `letters` a `dlq.replay.id` header on their source partitions already names,
    reading each partition from the oldest of their offsets (a replay comes after its original)."""
    start: dict[tuple[str, int], int] = {}
    for letter in letters:
        if letter.partition is not None and letter.offset is not None:
            position = (letter.source_topic, letter.partition)
            start[position] = min(start.get(position, letter.offset), letter.offset)
    found: set[str] = set()
    if start:
        async for records in read_to_end(config, start=start):
            found.update(value.decode(errors="replace") for r in records for name, value in r.headers or ()
                         if name == Header.REPLAY_OF)
    return found


async def send(config: Any, letters: list[DeadLetter]) -> None:
    """Re-send each letter's input to its source partition, one acknowledged record at a time:
    a failure stops the run with everything before it on record (a next run skips those)."""
    if not letters:
        return
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**config.aiokafka(), acks="all")
    await producer.start()
    try:
        for letter in letters:
            await producer.send_and_wait(letter.source_topic, original_payload(letter), key=original_key(letter),
                                         partition=letter.partition,
                                         headers=[(Header.REPLAY_OF, letter.dead_letter_id.encode())])
    finally:
        await producer.stop()
