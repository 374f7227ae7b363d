"""`sundial-dashboard`: serve the REST API and the page."""

from __future__ import annotations

import sys

import uvicorn

from sundial.core.config import ConfigError
from sundial.core.logs import configure_logging
from sundial.dashboard.app import create_app
from sundial.dashboard.config import load_dashboard_settings


def main() -> None:
    try:
        settings = load_dashboard_settings()
    except ConfigError as exc:
        sys.exit(f"sundial-dashboard: {exc}")
    configure_logging(settings.log_level, "text")
    # Our own logging setup stays in charge; uvicorn's access log would repeat every poll.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
