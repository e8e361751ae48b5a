"""`python -m orders`: serves the app on loopback, beside its Dapr sidecar (dapr.yaml starts it this way)."""

import uvicorn

from orders.main import create_app
from orders.observability import configure_logging
from orders.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host="127.0.0.1",
        port=settings.app_port,
        log_config=None,  # keep the JSON logging configured above
        access_log=False,  # RequestContextMiddleware logs each request with its id
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
