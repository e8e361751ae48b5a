"""`python -m users`: serves the app on loopback, beside its Dapr sidecar (dapr.yaml starts it this way)."""

from sidecart_kit.service import serve
from users.main import create_app
from users.settings import Settings


def main() -> None:
    serve(create_app, Settings())


if __name__ == "__main__":
    main()
