"""Index templates with explicit mappings, for Elasticsearch 8.x (`PUT _index_template/<name>`).

Composable templates (`index_patterns`, `template.settings`, `template.mappings`, `priority`)
as documented for Elasticsearch 8. Every mapping is `dynamic: strict`: a document with a field
the template does not declare is refused (and dead-lettered), so the indices never drift from
the schema. The `ml-api-message` input fields are generated from the feature spec; the
`ml-api-perfs` per-function numbers use a dynamic template (`function_ms.*` -> float).
"""

from __future__ import annotations

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
    return {
        "dynamic": "strict",
        "dynamic_templates": [
            {
                "function_ms": {
                    "path_match": "profile.function_ms.*",
                    "mapping": DOUBLE,
                }
            }
        ],
        "properties": {
            **COMMON,
            "http": {"properties": {"response": {"properties": {"status_code": LONG}}}},
            "profile": {
                "properties": {
                    **PROFILE_NUMBERS,
                    "inference_ms_per_case": DOUBLE,
                    "top_functions": HOT_FUNCTION,
                    "hottest_function": KEYWORD,
                    # New function names become fields through the dynamic template above.
                    "function_ms": {"type": "object", "dynamic": True},
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
        },
    }


def index_templates(names: IndexNames) -> dict[str, dict[str, Any]]:
    """Template name -> body of `PUT _index_template/<name>`."""
    mappings = {
        names.logs: logs_mapping(),
        names.message: message_mapping(),
        names.perfs: perfs_mapping(),
        names.dead_letters: dead_letters_mapping(),
    }
    return {
        index: {
            "index_patterns": [index, f"{index}-*"],
            "priority": 200,
            "template": {"settings": SETTINGS, "mappings": mapping},
            "_meta": {"managed_by": "inferlog logs_pipeline setup"},
        }
        for index, mapping in mappings.items()
    }
