"""`python -m analytics`: serve analytics at the port the dapr CLI gives it (APP_PORT)."""

from analytics.main import create_app
from analytics.settings import Settings
from sidecart_kit.service import serve


def main() -> None:
    serve(create_app, Settings())


if __name__ == "__main__":
    main()
