"""`python -m ingest`: serve ingest on 127.0.0.1 at the port the dapr CLI gives it (APP_PORT)."""

from ingest.main import create_app
from ingest.settings import Settings
from sidecart_kit.service import serve


def main() -> None:
    serve(create_app, Settings())


if __name__ == "__main__":
    main()
