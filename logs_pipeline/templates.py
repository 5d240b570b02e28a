"""Index templates, lifecycle policy and first indices, for Elasticsearch 8.x.

Composable templates (`PUT _index_template/<name>`: `index_patterns`, `template.settings`,
`template.mappings`, `priority`) as documented for Elasticsearch 8. Every mapping is
`dynamic: strict`: a document with a field the template does not declare is refused (and
dead-lettered), so the indices never drift from the schema. The `ml-api-message` input fields
are generated from the feature spec.

Retention: each index name (`ml-api-logs`...) is a rollover alias. `setup` installs the ILM
policy (`PUT _ilm/policy/<name>`), the templates (matching `<alias>-*`, naming the policy and
the alias in `index.lifecycle.name` / `index.lifecycle.rollover_alias`), then creates the first
index `<alias>-000001` with the alias as its write index. ILM rolls over to `-000002`... after a
day or 50 GB per primary shard, and deletes an index RETENTION_DAYS after its rollover. The
pipeline writes to the alias with `index` operations and explicit `_id`s: a redelivered record
overwrites its documents (within the current write index). With RETENTION_DAYS=0 there is no
policy (servers without ILM, such as OpenSearch and its test doubles): indices grow forever.
"""

from __future__ import annotations

from dataclasses import astuple
from typing import Any

from inferlog.features import FEATURE_NAMES
from logs_pipeline.indexer import IndexNames

KEYWORD = {"type": "keyword"}
TEXT = {"type": "text"}
FLOAT = {"type": "float"}
DOUBLE = {"type": "double"}
LONG = {"type": "long"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
DATE = {"type": "date"}

SETTINGS = {"number_of_shards": 1, "number_of_replicas": 0}
POLICY_NAME = "inferlog-retention"
PIPELINE_USER = "inferlog-pipeline"  # and its role's name
ROLLOVER = {"max_age": "1d", "max_primary_shard_size": "50gb"}
FIRST_GENERATION = "000001"  # rollover increments a trailing `-<number>`, keeping its width

PREDICTION = {
    "properties": {
        "label": KEYWORD,
        "probability": DOUBLE,
        "threshold": DOUBLE,
        "risk_level": KEYWORD,
        "out_of_range_features": KEYWORD,
    }
}
HOT_FUNCTION = {
    "properties": {
        "function": KEYWORD,
        "file": KEYWORD,
        "line": INTEGER,
        "calls": LONG,
        "tottime_ms": DOUBLE,
        "cumtime_ms": DOUBLE,
    }
}
# One of a request's charted functions in ml-api-perfs (logs_pipeline/indexer.py).
CHARTED_FUNCTION = {
    "properties": {
        "name": KEYWORD,  # module:function, the same in every request
        "calls": LONG,
        "tottime_ms": DOUBLE,
        "cumtime_ms": DOUBLE,
    }
}
PROFILE_NUMBERS = {
    "latency_ms": DOUBLE,
    "inference_ms": DOUBLE,
    "cpu_ms": DOUBLE,
    "rss_mb": DOUBLE,
    "rss_delta_mb": DOUBLE,
    "function_calls": LONG,
    "primitive_calls": LONG,
}
BODY = {"properties": {"bytes": LONG}}
COMMON = {
    "@timestamp": DATE,
    "transaction": {"properties": {"id": KEYWORD}},
    "url": {"properties": {"path": KEYWORD}},
    "model": {"properties": {"name": KEYWORD, "version": KEYWORD}},
    "batch_size": INTEGER,
}


def logs_mapping() -> dict[str, Any]:
    """The request record (`inferlog.request/1`), Elastic Common Schema types."""
    return {
        "dynamic": "strict",
        "properties": {
            "@timestamp": DATE,
            "schema": KEYWORD,
            "log": {"properties": {"level": KEYWORD}},
            "message": TEXT,
            "transaction": {"properties": {"id": KEYWORD}},
            "service": {"properties": {"name": KEYWORD, "version": KEYWORD}},
            "host": {"properties": {"name": KEYWORD}},
            "http": {
                "properties": {
                    "request": {"properties": {"id": KEYWORD, "method": KEYWORD, "body": BODY}},
                    "response": {"properties": {"status_code": LONG, "body": BODY}},
                }
            },
            "url": {"properties": {"path": KEYWORD}},
            "client": {"properties": {"ip": {"type": "ip"}}},
            "user_agent": {"properties": {"original": KEYWORD}},
            "event": {"properties": {"duration": LONG, "outcome": KEYWORD}},
            "error": {"properties": {"type": KEYWORD, "message": TEXT}},
            "ml": {
                "properties": {
                    "model": {"properties": {"name": KEYWORD, "version": KEYWORD}},
                    "batch_size": INTEGER,
                    # Kept in _source, searchable in ml-api-message where each is typed.
                    "input": {"type": "object", "enabled": False},
                    "prediction": PREDICTION,
                    "probabilities": {"properties": {"malignant": DOUBLE, "benign": DOUBLE}},
                    "omitted": {
                        "properties": {
                            "cases": INTEGER,
                            "labels": {"properties": {"malignant": INTEGER, "benign": INTEGER}},
                        }
                    },
                    "profile": {
                        "properties": {
                            "profiled": BOOLEAN,
                            "reason": KEYWORD,
                            **PROFILE_NUMBERS,
                            "top_functions": HOT_FUNCTION,
                        }
                    },
                }
            },
        },
    }


def message_mapping() -> dict[str, Any]:
    return {
        "dynamic": "strict",
        "properties": {
            **COMMON,
            "row": INTEGER,
            "input": {"properties": {name: DOUBLE for name in FEATURE_NAMES}},
            "prediction": {"properties": {**PREDICTION["properties"], "out_of_range": BOOLEAN}},
        },
    }


def perfs_mapping() -> dict[str, Any]:
    """`kind: request` documents (one per profiled request) and `kind: function` documents (one
    per rank of a profiled request's top functions) share the index; see
    logs_pipeline/indexer.py."""
    return {
        "dynamic": "strict",
        "properties": {
            **COMMON,
            "kind": KEYWORD,
            "http": {"properties": {"response": {"properties": {"status_code": LONG}}}},
            "profile": {
                "properties": {
                    **PROFILE_NUMBERS,
                    "inference_ms_per_case": DOUBLE,
                    "hottest_function": KEYWORD,
                }
            },
            "function": {
                "properties": {
                    "rank": INTEGER,
                    "by_self": CHARTED_FUNCTION,
                    "by_cumulative": CHARTED_FUNCTION,
                }
            },
        },
    }


def dead_letters_mapping() -> dict[str, Any]:
    return {
        "dynamic": "strict",
        "properties": {
            "@timestamp": DATE,
            "stream_id": KEYWORD,
            "index": KEYWORD,
            "reason": KEYWORD,
            "error": TEXT,
            "original": {"type": "text", "index": False},
            "original_truncated": BOOLEAN,
        },
    }


def lifecycle_policy(retention_days: int) -> dict[str, Any]:
    """Body of `PUT _ilm/policy/<POLICY_NAME>`: roll over daily (or at 50 GB per primary
    shard), delete `retention_days` after the rollover (ILM counts a rolled-over index's age
    from its rollover), so a document lives between retention_days and retention_days + 1."""
    return {
        "policy": {
            "_meta": {"managed_by": "inferlog logs_pipeline setup"},
            "phases": {
                "hot": {"min_age": "0ms", "actions": {"rollover": ROLLOVER}},
                "delete": {"min_age": f"{retention_days}d", "actions": {"delete": {}}},
            },
        }
    }


def first_index(alias: str) -> tuple[str, dict[str, Any]]:
    """Name and body of `PUT <alias>-000001`: the alias's first write index."""
    return f"{alias}-{FIRST_GENERATION}", {"aliases": {alias: {"is_write_index": True}}}


def index_templates(
    names: IndexNames, policy: str | None = POLICY_NAME
) -> dict[str, dict[str, Any]]:
    """Template name -> body of `PUT _index_template/<name>`; `policy=None`: no ILM settings
    (a server without ILM refuses them: `unknown setting [index.lifecycle.name]`)."""
    mappings = {
        names.logs: logs_mapping(),
        names.message: message_mapping(),
        names.perfs: perfs_mapping(),
        names.dead_letters: dead_letters_mapping(),
    }
    templates = {}
    for alias, mapping in mappings.items():
        settings: dict[str, Any] = dict(SETTINGS)
        if policy:
            settings |= {
                "index.lifecycle.name": policy,
                "index.lifecycle.rollover_alias": alias,
            }
        templates[alias] = {
            # Only the generations: the bare name is the alias, never an index.
            "index_patterns": [f"{alias}-*"],
            "priority": 200,
            "template": {"settings": settings, "mappings": mapping},
            "_meta": {"managed_by": "inferlog logs_pipeline setup"},
        }
    return templates


def pipeline_role(names: IndexNames) -> dict[str, Any]:
    """Body of `PUT _security/role/<PIPELINE_USER>`: what the long-running pipeline does, and
    nothing more. It writes documents by id through the aliases `setup` made (`index`: a
    redelivered record overwrites its own documents), reads the aliases' metadata, and counts
    documents for `status` (`_cat/indices`: `monitor`, on the cluster and the indices); the
    cluster's `monitor` also covers `GET /`, which it calls on connecting. Templates, ILM,
    aliases and rollover stay with `setup` (run as an administrator); ILM rolls indices over
    as the user who wrote the policy."""
    return {
        "cluster": ["monitor"],
        "indices": [
            {
                # Each alias and its generations (`ml-api-logs-000001`...), nothing else.
                "names": sorted(f"{alias}*" for alias in astuple(names)),
                "privileges": ["index", "view_index_metadata", "monitor"],
                "allow_restricted_indices": False,
            }
        ],
        "metadata": {"managed_by": "inferlog logs_pipeline setup"},
    }
