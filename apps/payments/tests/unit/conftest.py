"""The ids and time the tests share (the kit's fixtures give the fakes of the ports: store, sleep, sidecar_health)."""

import uuid
from datetime import UTC, datetime

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
USER = uuid.UUID("6f1c2a4e-2b0b-4bb8-9a57-6f0a1d2f9c11")
ORDER = uuid.UUID("7d7f5f3e-1f0a-4a51-9d43-1a5f3f0b2c11")
