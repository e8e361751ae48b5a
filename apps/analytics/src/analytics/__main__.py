"""`python -m analytics`: serve analytics on 127.0.0.1 at the port the dapr CLI gives it (APP_PORT)."""

import uvicorn

from analytics.settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run(
        "analytics.main:create_app",
        factory=True,
        host=settings.app_host,
        port=settings.app_port,
        log_config=None,  # create_app routes every log line through structlog's JSON renderer
        access_log=False,  # the request middleware logs each request with its request id
        server_header=False,
    )


if __name__ == "__main__":
    main()
