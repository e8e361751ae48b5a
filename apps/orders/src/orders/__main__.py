"""`python -m orders`: serves the app on loopback, beside its Dapr sidecar (dapr.yaml starts it this way)."""

from orders.main import create_app
from orders.settings import Settings
from sidecart_kit.service import serve


def main() -> None:
    serve(create_app, Settings())


if __name__ == "__main__":
    main()
