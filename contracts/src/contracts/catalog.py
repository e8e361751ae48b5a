"""Every published event contract, in one list: the JSON Schema export and the contract tests read it."""

from contracts.events import Event
from contracts.orders import OrderCancelled, OrderCompleted
from contracts.telemetry import TelemetryEvent
from contracts.users import UserRegistered

EVENTS: tuple[type[Event], ...] = (UserRegistered, OrderCompleted, OrderCancelled, TelemetryEvent)
