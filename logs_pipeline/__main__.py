"""`python -m logs_pipeline run | once | replay | setup | status | drift-report`.

- run     consume continuously (one consumer of the group; start several to scale out), with a
          one-line progress log every PIPELINE_PROGRESS_SECONDS
- once    drain what the stream holds now, with a progress bar, then exit
- replay  load the NDJSON files of data/indices/ into Elasticsearch (idempotent)
- setup   the retention policy, index templates and first indices; with KIBANA_URL, the
          Kibana saved objects; with KIBANA_SYSTEM_PASSWORD, the kibana_system user's password
- status  stream length, pending, lag, consumers, dead letters, documents per index
- drift-report [--since TIME] [--until TIME] [--out FILE]
          drift of the ml-api-message cases over a period, as an HTML report with a plot
          per feature
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import sys
import time
from dataclasses import astuple
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from tqdm import tqdm

from inferlog.config import Settings, get_settings
from inferlog.moments import parse_moment
from logs_pipeline.collector import Collector, consumer_name
from logs_pipeline.filter import RecordFilter
from logs_pipeline.indexer import Indexer, IndexNames
from logs_pipeline.pipeline import Pipeline
from logs_pipeline.sinks import Sink
from logs_pipeline.sinks.ndjson import NdjsonSink, read_actions
from logs_pipeline.status import stream_status

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

# The Elasticsearch client, the templates (whose feature names load scikit-learn's data set)
# and the Kibana objects are imported by the commands that use them: `run`, `once` and
# `status` into NDJSON start in about a second instead of eight.

log = logging.getLogger("logs_pipeline")


class CliError(RuntimeError):
    """A clear message for the user, no traceback."""


REDIS_GRACE_SECONDS = 5.0
REPLAY_BACKOFF_SECONDS = (1, 2, 4, 8, 16)
DRIFT_REPORT = Path("data/reports/drift-report.html")  # under data/: kept out of git


def redis_client(settings: Settings) -> redis.Redis:
    client = redis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        protocol=2,
        decode_responses=True,
        socket_connect_timeout=2.0,
        # XREADGROUP blocks up to PIPELINE_BLOCK_MS: a Redis silent for longer is stuck.
        socket_timeout=settings.pipeline_block_ms / 1000 + REDIS_GRACE_SECONDS,
    )
    try:
        client.ping()
    except redis.ConnectionError as exc:
        raise CliError(f"cannot reach Redis at REDIS_URL: {exc}") from exc
    return client


def elasticsearch_client(settings: Settings) -> Elasticsearch:
    from elasticsearch import TransportError as EsTransportError

    from logs_pipeline.sinks import elasticsearch as es_sink

    if not settings.elasticsearch_url:
        raise CliError("ELASTICSEARCH_URL is not set")
    client = es_sink.connect(
        settings.elasticsearch_url,
        username=settings.elasticsearch_username,
        password=settings.elasticsearch_password.get_secret_value()
        if settings.elasticsearch_password
        else None,
        api_key=settings.elasticsearch_api_key.get_secret_value()
        if settings.elasticsearch_api_key
        else None,
        ca_certs=settings.elasticsearch_ca_certs,
    )
    try:
        client.info()
    except EsTransportError as exc:
        raise CliError(
            f"cannot reach Elasticsearch at {settings.elasticsearch_url}: {exc}"
        ) from exc
    return client


def make_sink(settings: Settings) -> Sink:
    if settings.elasticsearch_url:
        from logs_pipeline.sinks import elasticsearch as es_sink

        return es_sink.ElasticsearchSink(elasticsearch_client(settings))
    return NdjsonSink(settings.indices_dir)


def make_pipeline(settings: Settings) -> Pipeline:
    collector = Collector(
        redis_client(settings),
        stream=settings.redis_stream,
        group=settings.redis_group,
        consumer=consumer_name(),
        batch_size=settings.pipeline_batch_size,
        block_ms=settings.pipeline_block_ms,
        claim_idle_ms=settings.pipeline_claim_idle_ms,
    )
    indexer = Indexer(IndexNames.of(settings), RecordFilter.from_json(settings.pipeline_rules))
    return Pipeline(
        collector,
        indexer,
        make_sink(settings),
        window_seconds=settings.live_window_seconds,
        claim_every_seconds=settings.pipeline_claim_idle_ms / 1000,
        max_deliveries=settings.pipeline_max_deliveries,
    )


def run(settings: Settings) -> int:
    pipeline = make_pipeline(settings)

    def on_signal(signum: int, _frame: Any) -> None:
        # Ctrl-C under `make run` reaches this process twice (terminal and supervisor).
        if not pipeline.stopping:
            log.info("%s: finishing the current batch", signal.Signals(signum).name)
        pipeline.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "consumer %s of group %s on %s -> %s",
        pipeline.collector.consumer,
        settings.redis_group,
        settings.redis_stream,
        pipeline.sink.name,
    )
    pipeline.run(settings.pipeline_progress_seconds)
    return 0


def once(settings: Settings) -> int:
    pipeline = make_pipeline(settings)
    pipeline.collector.ensure_group()
    total = pipeline.lag() or 0
    with tqdm(total=total, unit="record", desc="indexing", disable=None) as bar:
        while handled := pipeline.step(block=False):
            bar.update(handled)
    pipeline.trim()
    pipeline.leave_group()
    print(
        json.dumps(
            {
                "indexed": dict(pipeline.counters.documents),
                "entries": pipeline.counters.entries,
                "dead_letters": pipeline.counters.dead_letters,
                "refused_dead_letters": pipeline.counters.refused_dead_letters,
            }
        )
    )
    return 0


def replay(settings: Settings) -> int:
    from logs_pipeline.sinks import elasticsearch as es_sink

    client = elasticsearch_client(settings)
    prepare_indices(client, settings)
    sink = es_sink.ElasticsearchSink(client)
    files = sorted(settings.indices_dir.glob("*.ndjson"))
    if not files:
        raise CliError(f"no NDJSON files in {settings.indices_dir}")
    written = 0
    for path in files:
        actions = list(read_actions(path))
        for start in tqdm(range(0, len(actions), 500), desc=path.name, unit="batch", disable=None):
            pending = actions[start : start + 500]
            for wait in (*REPLAY_BACKOFF_SECONDS, None):  # a busy cluster gets a few chances
                result = sink.write(pending)
                for r in result.rejected:
                    log.error("refused %s/%s: %s", r.action["_index"], r.action["_id"], r.error)
                written += result.confirmed.total()
                pending = result.retry
                if not pending or wait is None:
                    break
                log.warning("%s; retrying in %d s", result.problem, wait)
                time.sleep(wait)
            if pending:
                raise CliError(f"Elasticsearch did not take {path.name}: {result.problem}")
    log.info("replayed %d documents from %d files", written, len(files))
    return 0


def prepare_indices(client: Elasticsearch, settings: Settings) -> None:
    """The retention policy, the templates, and each alias's first index: re-runnable."""
    from elasticsearch import BadRequestError

    from logs_pipeline import templates
    from logs_pipeline.sinks import elasticsearch as es_sink

    policy = templates.POLICY_NAME if settings.retention_days else None
    if policy:  # before the templates that name it
        body = templates.lifecycle_policy(settings.retention_days)
        client.ilm.put_lifecycle(name=policy, policy=body["policy"])
        log.info("lifecycle policy %s: delete after %d days", policy, settings.retention_days)
    index_names = IndexNames.of(settings)
    bodies = templates.index_templates(index_names, policy)
    es_sink.ElasticsearchSink(client).install_templates(bodies)
    for alias in astuple(index_names):
        if client.indices.exists_alias(name=alias):
            # Indices made by an earlier version take the fields added since (a strict mapping
            # would refuse their documents until the next rollover); adding fields is allowed.
            mapping = bodies[alias]["template"]["mappings"]
            try:
                client.indices.put_mapping(index=alias, properties=mapping["properties"])
            except BadRequestError as exc:  # a field of another type: theirs stays
                log.warning(
                    "%s keeps its mapping (%s): documents it refuses go to the dead letters "
                    "until the next rollover",
                    alias,
                    exc.message,
                )
            continue
        if client.indices.exists(index=alias):  # made by an older version, or auto-created
            raise CliError(
                f"{alias} is an index, not an alias: reindex it into {alias}-000001 (or delete "
                "it), then run setup again"
            )
        index, body = templates.first_index(alias)
        try:
            client.indices.create(index=index, aliases=body["aliases"])
        except BadRequestError as exc:  # a concurrent setup made it first
            if exc.error != "resource_already_exists_exception":
                raise
        log.info("index %s created behind the alias %s", index, alias)


def setup(settings: Settings) -> int:
    """The kibana_system password (if given), the retention policy, the index templates and
    first indices, the pipeline's role and user (if PIPELINE_ELASTICSEARCH_PASSWORD is set), the
    Kibana saved objects (if KIBANA_URL is set): everything the full stack needs before the
    pipeline starts."""
    client = elasticsearch_client(settings)
    if settings.kibana_system_password:
        client.security.change_password(
            username="kibana_system",
            password=settings.kibana_system_password.get_secret_value(),
        )
        log.info("kibana_system password set")
    prepare_indices(client, settings)
    if settings.pipeline_elasticsearch_password:
        from logs_pipeline import templates

        user, index_names = templates.PIPELINE_USER, IndexNames.of(settings)
        client.security.put_role(name=user, **templates.pipeline_role(index_names))
        client.security.put_user(
            username=user,
            password=settings.pipeline_elasticsearch_password.get_secret_value(),
            roles=[user],
            full_name="inferlog logs pipeline",
        )
        log.info("role and user %s: write %s", user, ", ".join(astuple(index_names)))
    if settings.kibana_url:
        import httpx

        from logs_pipeline import kibana

        auth = None
        if settings.elasticsearch_username and settings.elasticsearch_password:
            auth = (
                settings.elasticsearch_username,
                settings.elasticsearch_password.get_secret_value(),
            )
        payload = kibana.to_ndjson(kibana.saved_objects(IndexNames.of(settings)))
        try:
            count = kibana.import_saved_objects(settings.kibana_url, auth, payload)
        except (RuntimeError, httpx.HTTPError) as exc:
            raise CliError(f"Kibana saved objects: {exc}") from exc
        log.info("imported %d Kibana saved objects into %s", count, settings.kibana_url)
    return 0


def status(settings: Settings) -> int:
    report = stream_status(
        redis_client(settings),
        settings.redis_stream,
        settings.redis_group,
        settings.pipeline_claim_idle_ms,
    )
    report["sink"] = make_sink(settings).name
    report["documents"] = make_sink(settings).counts()
    print(json.dumps(report, indent=2))
    return 0


def drift(settings: Settings, args: argparse.Namespace) -> int:
    from inferlog.ml.artifacts import load_artifacts
    from logs_pipeline import drift_report

    since, until = args.since, args.until
    index = IndexNames.of(settings).message
    if settings.elasticsearch_url:
        documents = drift_report.documents_from_elasticsearch(
            elasticsearch_client(settings), index, since, until
        )
        source = f"{index} in {settings.elasticsearch_url}"
    else:
        path = settings.indices_dir / f"{index}.ndjson"
        documents = drift_report.documents_from_ndjson(path, since, until)
        source = str(path)
    reference = load_artifacts(settings.model_dir).reference
    report = drift_report.build(reference, documents, settings.drift_min_cases)
    period = f"from {since or 'the first case'} to {until or 'the last case'}"
    out: Path = args.out or settings.data_dir / "reports" / "drift-report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(drift_report.render(report, period, source))
    verdict = report.get("drifted_features", report.get("message"))
    log.info("drift report of %d cases written to %s: %s", report["cases"], out, verdict)
    return 0


def _moment(text: str) -> dt.datetime:
    try:
        return parse_moment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


COMMANDS = {  # name: (command, help)
    "run": (run, "consume continuously, one consumer of the group"),
    "once": (once, "drain what the stream holds now, then exit"),
    "replay": (replay, "load the NDJSON files of data/indices/ into Elasticsearch"),
    "setup": (setup, "retention policy, index templates, first indices, Kibana objects"),
    "status": (status, "stream, pending, lag, consumers, dead letters, documents per index"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m logs_pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary)
    report = commands.add_parser(
        "drift-report", help="drift of the ml-api-message cases over a period, as HTML"
    )
    report.add_argument(
        "--since", type=_moment, metavar="TIME", help="start, ISO 8601 (UTC unless zoned)"
    )
    report.add_argument(
        "--until", type=_moment, metavar="TIME", help="end, ISO 8601 (UTC unless zoned)"
    )
    report.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="the HTML file (default: DATA_DIR/reports/drift-report.html, kept out of git)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The transport logs every failed attempt with a traceback; the pipeline reports failures
    # itself, in one line each.
    logging.getLogger("elastic_transport").setLevel(logging.CRITICAL)
    try:
        if args.command == "drift-report":
            return drift(settings, args)
        return COMMANDS[args.command][0](settings)
    except CliError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
