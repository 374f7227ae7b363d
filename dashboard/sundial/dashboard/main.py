"""`sundial-dashboard`: serve the REST API and the page."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator

import uvicorn

from sundial.core.config import ConfigError, load_dashboard_settings
from sundial.core.logs import configure_logging
from sundial.dashboard.app import create_app


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after a graceful shutdown, so a clean stop would exit -15;
    like the operator and the worker, a stop that went well exits 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def main() -> None:
    try:
        settings = load_dashboard_settings()
    except ConfigError as exc:
        sys.exit(f"sundial-dashboard: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    # Our logging setup stays in charge; an access log would repeat every poll of every page.
    # No access log, which is also why no Authorization header or query string can reach a log line;
    # X-Forwarded-For is believed only from forwarded_allow_ips, since it names the throttled client.
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                            access_log=False, forwarded_allow_ips=settings.forwarded_allow_ips)
    _Server(config).run()


if __name__ == "__main__":
    main()
