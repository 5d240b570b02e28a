"""Command line: `python -m inferlog train | api | run | simulate`."""

from __future__ import annotations

import argparse
import logging
import logging.config
import socket
import sys
from pathlib import Path
from typing import Any

from inferlog.config import Settings, get_settings

# The model's modules (numpy, joblib, scikit-learn) are imported only by the commands that use
# them, so `simulate` and `--help` start in well under a second.

log = logging.getLogger("inferlog")


def logging_config(level: str) -> dict[str, Any]:
    """One log format for every process; uvicorn applies it in each API worker too."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "root": {"handlers": ["stderr"], "level": level},
    }


def _configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings.log_level))


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port the system says is free now (for test and benchmark servers)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_taken(host: str, port: int, variable: str) -> bool:
    """True (and said in one line) when a server cannot bind host:port."""
    if port_free(host, port):
        return False
    log.error(
        "port %s:%d is already in use: stop the process using it or set %s", host, port, variable
    )
    return True


def train(model_dir: Path) -> int:
    from inferlog.ml.artifacts import CARD_FILE
    from inferlog.ml.train import train as run_training

    run_training(model_dir)
    log.info("model card: %s", model_dir / CARD_FILE)
    return 0


def serve_api(settings: Settings) -> int:
    import uvicorn

    from inferlog.ml.artifacts import ModelLoadError, load_artifacts
    from inferlog.ml.predictor import Predictor

    if port_taken(settings.api_host, settings.api_port, "API_PORT"):
        return 2
    try:
        Predictor(load_artifacts(settings.model_dir))  # fail here in one line, not per worker
    except ModelLoadError as exc:
        log.error("cannot start the API: %s", exc)
        return 1
    log.info(
        "API on http://%s:%d (docs at /docs), %d worker process(es)",
        settings.api_host,
        settings.api_port,
        settings.api_workers,
    )
    # Each worker process builds its own app (model, shipper, spool) from the environment.
    uvicorn.run(
        "inferlog.api.app:create_server_app",
        factory=True,
        workers=settings.api_workers,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        log_config=logging_config(settings.log_level),
        access_log=False,
        http="inferlog.api.header_limits:HeaderLimitsProtocol",
        timeout_keep_alive=settings.api_keep_alive_seconds,
        limit_concurrency=settings.api_max_connections,
        # X-Forwarded-For only from the proxies named; uvicorn trusts 127.0.0.1 by default,
        # so any local client could claim any address.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        server_header=False,  # the server's name and version are nobody's business
    )
    return 0


def run(settings: Settings) -> int:
    from inferlog.ml.artifacts import CARD_FILE
    from inferlog.supervisor import Supervisor

    if not (settings.model_dir / CARD_FILE).exists():
        log.info("no model in %s: training it first", settings.model_dir)
        train(settings.model_dir)
    return Supervisor(settings).run()


def write_compose_secrets(env_file: Path, out: Path) -> int:
    from inferlog.compose_secrets import SecretsError, write_secrets

    try:
        written = write_secrets(env_file, out)
    except SecretsError as exc:
        log.error("%s", exc)
        return 1
    log.info("wrote %s", ", ".join(str(path) for path in written))
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="inferlog", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train the model and write model/")
    train_cmd.add_argument("--model-dir", type=Path, default=settings.model_dir)
    commands.add_parser("api", help="serve the API (the model must exist)")
    commands.add_parser(
        "run", help="train the model if missing, then start Redis, the API, the UI and the pipeline"
    )
    commands.add_parser("simulate", help="send realistic traffic to the API (see its --help)")
    secrets_cmd = commands.add_parser(
        "secrets", help="write the passwords in .env to secrets/ for docker compose (make up)"
    )
    secrets_cmd.add_argument("--env-file", type=Path, default=Path(".env"))
    secrets_cmd.add_argument("--out", type=Path, default=Path("secrets"))
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:  # its options belong to its own parser
        from inferlog.simulate import main as simulate_main

        _configure_logging(settings)
        return simulate_main(argv[1:], api_url=settings.api_url)
    args = parser.parse_args(argv)
    _configure_logging(settings)
    if args.command == "train":
        return train(args.model_dir)
    if args.command == "api":
        return serve_api(settings)
    if args.command == "secrets":
        return write_compose_secrets(args.env_file, args.out)
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
