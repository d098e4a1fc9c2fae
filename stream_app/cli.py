"""`stream-app`: the one console script. Each verb is a thin call into its own module."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence

from pydantic import ValidationError

from stream_app import audit_cli, dead_letters_cli, models_cli, topics_cli
from stream_app.settings import Settings, get_settings
from stream_app.setup_error import SetupError

STREAMS = ("maintenance", "supply-chain", "demand")


def _cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.broker import EmbeddedBroker

    bootstrap = args.bootstrap or settings.bootstrap_servers
    with EmbeddedBroker(bootstrap, log_file=settings.data_dir / "broker.log") as broker:
        print(f"embedded broker listening on {bootstrap} (pid {broker.pid}); Ctrl-C stops it", flush=True)
        try:
            # Blocked first, or SIGTERM kills this process and leaves the broker (own session) running.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        except KeyboardInterrupt:
            pass
    return 0


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.worker import run_worker

    _check_models(settings, required=args.require_models)
    if args.metrics_port is not None:
        settings = settings.model_copy(update={"metrics_port": args.metrics_port})
    run_worker(settings, loglevel=args.loglevel)
    return 0


def _check_models(settings: Settings, required: bool) -> None:
    """A worker without a model scores with its stream's rules: say so, or refuse when required."""
    from stream_app.errors import NoModel
    from stream_app.registry import ModelRegistry

    registry = ModelRegistry(settings.model_dir)
    missing = []
    for name in STREAMS:
        try:
            if registry.current(name) is None:
                missing.append(name)
        except Exception:  # an unreadable store: the stream's scorer logs why and falls back itself
            continue
    if missing and required:
        raise NoModel(missing, settings.model_dir)
    for name in missing:
        print(f"stream-app worker: no trained {name} model in {settings.model_dir}: its rules decide until one is "
              f"trained (stream-app train {name})", file=sys.stderr)


def _cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.training.cli import train_streams
    from stream_app.training.release import Release

    streams = STREAMS if args.stream == "all" else (args.stream,)
    release = Release("candidate" if args.candidate else "force" if args.force else "gate")
    return train_streams(
        settings, streams, data=args.data, outcomes=args.outcomes, quick=args.quick, if_missing=args.if_missing,
        release=release, mapping=args.map,
    )


def _cmd_retrain(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.training.retrain import RetrainJob, retrain_command

    job = RetrainJob(args.stream, since_hours=args.since_hours, quick=args.quick)
    return retrain_command(
        settings, job, every_hours=args.every_hours, on_drift=args.on_drift, min_interval_hours=args.min_interval_hours
    )


def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.simulation.cli import simulate

    return simulate(settings, args)


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.demo import run_demo

    streams = [s.strip() for s in args.streams.split(",") if s.strip()]
    unknown = [s for s in streams if s not in STREAMS]
    if unknown or not streams:
        print(f"--streams takes a comma-separated list of {', '.join(STREAMS)}", file=sys.stderr)
        return 2
    return run_demo(settings, duration=args.duration, streams=streams, speed=args.speed, machines=args.machines)


def _cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.tail import tail

    try:
        asyncio.run(tail(settings, args.topic, from_beginning=not args.new, limit=args.max, idle=args.idle))
    except KeyboardInterrupt:
        pass
    return 0


DESCRIPTION = """Real-time scoring of industrial event streams on Kafka: failure risk of machines,
anomalies in supply-chain shipments, demand forecasts; alerts with explanations."""
EPILOG = """start here:
  stream-app demo       everything on this machine: broker, models, a worker and simulated
                        streams; alerts on screen (Ctrl-C stops)
  stream-app worker     score your own topics (KAFKA_BOOTSTRAP_SERVERS=host:9092); then
                        stream-app tail alerts --new

stream-app COMMAND -h describes a command."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stream-app")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _hours(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of hours")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stream-app", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"stream-app {_version()}")
    parser.add_argument("--debug", action="store_true", help="on an error, show the full traceback")
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    p = sub.add_parser("broker", help="run the embedded development broker in the foreground")
    p.add_argument("--bootstrap", help="host:port to listen on (default: the configured bootstrap address)")
    p.set_defaults(func=_cmd_broker)

    p = sub.add_parser("worker", help="score the input topics as events arrive: every stream's agent in one process")
    p.add_argument("--loglevel", default="info")
    p.add_argument("--metrics-port", type=int, help="Prometheus port (0 disables; default from settings)")
    p.add_argument("--require-models", action="store_true",
                   help="refuse to start unless every stream has a trained model (default: its rules decide)")
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser("train", help="train a model version and write its evaluation report")
    p.add_argument("stream", choices=(*STREAMS, "all"))
    p.add_argument("--data", type=Path, help="history file (JSON Lines in the event layout, CSV or Parquet); default: simulated")
    p.add_argument("--outcomes", type=Path, help="the file that goes with --data: failures (maintenance), verdicts (supply-chain), calendar (demand)")
    p.add_argument("--map", action="append", default=[], metavar="OURS=THEIRS",
                   help="read a CSV/Parquet column under our name, e.g. --map machine_id=AssetTag (repeatable; "
                        "outcomes:OURS=THEIRS for the --outcomes file only), or a JSON file {ours: theirs}")
    p.add_argument("--quick", action="store_true", help="small data and few epochs (smoke runs)")
    p.add_argument("--if-missing", action="store_true", help="skip streams that already have a current model")
    release = p.add_mutually_exclusive_group()
    release.add_argument("--candidate", action="store_true", help="make the new version the shadow candidate instead of promoting it")
    release.add_argument("--force", action="store_true", help="promote the new version even when the promotion gate refuses (recorded)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("retrain", help="retrain a model from its history topics; promote it through the gate")
    p.add_argument("stream", choices=STREAMS)
    p.add_argument("--since-hours", type=_hours, help="train on the last H hours of event time only (default: all retained history)")
    p.add_argument("--quick", action="store_true", help="small model, few epochs (smoke runs)")
    p.add_argument("--every-hours", type=_hours, help="keep running: retrain now and every H hours")
    p.add_argument("--on-drift", action="store_true", help="keep running: retrain when drift-events reports drift in this stream")
    p.add_argument("--min-interval-hours", type=_hours, default=6.0, help="with --on-drift: at most one retraining per this many hours (default 6)")
    p.set_defaults(func=_cmd_retrain)

    p = sub.add_parser("simulate", help="produce simulated events at a rate, or write a history file")
    p.add_argument("--stream", choices=STREAMS, default="maintenance")
    p.add_argument("--rate", type=float, default=200.0, help="events per second")
    p.add_argument("--machines", type=int, default=50, help="maintenance: machines in the fleet")
    p.add_argument("--size", type=int, help="supply-chain: days of history; demand: SKUs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    p.add_argument("--count", type=int, help="readings to send, then stop")
    p.add_argument("--drift", help="inject a drift: SENSOR=FACTOR@READINGS, e.g. vibration_rms=1.8@5000")
    p.add_argument("--history", type=Path, help="write a history (readings + outcomes JSONL) to this folder instead")
    p.add_argument("--lives", type=int, default=1, help="with --history: machine lives (runs to failure) per machine")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("demo", help="see it work: broker, models, a worker and simulated streams in one command; alerts on screen")
    p.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    p.add_argument("--streams", default=",".join(STREAMS), help="comma-separated streams to simulate (default: all)")
    # 40 machines at 80 readings/s: a simulated hour of the fleet a second.
    p.add_argument("--speed", type=float, default=1.0, help="multiplies every stream's event rate")
    p.add_argument("--machines", type=int, default=40)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("tail", help="print a topic's messages as JSON lines (e.g. alerts, dead-letters)")
    p.add_argument("topic")
    p.add_argument("--new", action="store_true", help="only messages arriving from now on")
    p.add_argument("--max", type=int, help="stop after this many messages")
    p.add_argument("--idle", type=float, help="stop after this many seconds without a message")
    p.set_defaults(func=_cmd_tail)

    p = sub.add_parser("topics", help="the topics the product needs against the cluster's: plan, create, check")
    topics_cli.add_arguments(p)
    p.set_defaults(func=topics_cli.run)

    dead_letters_cli.add_parser(sub)
    audit_cli.add_parser(sub)

    p = sub.add_parser("models", help="list, show, promote, roll back model versions; their history")
    models_cli.add_arguments(p)
    p.set_defaults(func=models_cli.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:  # one line naming the setting, not pydantic's report
        error = exc.errors()[0]
        name = "__".join(str(part) for part in error["loc"]).upper()
        print(f"stream-app: setting {name}: {error['msg']} (got {error.get('input')!r})", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Client chatter (joins, metadata) is not news to someone tailing a topic or running a demo.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        return int(args.func(args, settings) or 0)
    except SetupError as exc:  # a misconfiguration: its one line, no traceback
        if args.debug:
            raise
        print(f"stream-app: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except (Exception, SystemExit) as exc:  # the cause and the fix in a line or two (stream_app/errors.py)
        if args.debug or (isinstance(exc, SystemExit) and not isinstance(exc.code, str)):
            raise
        from stream_app.errors import report

        return report(exc, settings)
