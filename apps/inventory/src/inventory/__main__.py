"""`python -m inventory`: serve inventory on 127.0.0.1 at the port the dapr CLI gives it (APP_PORT)."""

from inventory.main import create_app
from inventory.settings import Settings
from sidecart_kit.service import serve


def main() -> None:
    serve(create_app, Settings())


if __name__ == "__main__":
    main()
