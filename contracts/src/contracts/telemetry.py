"""Telemetry: events clients send in batches to ingest, and the answer ingest gives each batch."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from contracts.events import Event

# How far ahead of the receiver's clock an event may be stamped (clients' clocks drift; the future does not come).
MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_PROPERTIES = 20
TelemetryType = Literal["page_view", "product_view", "search", "add_to_cart"]
TYPES_NEEDING_SKU: frozenset[str] = frozenset({"product_view", "add_to_cart"})

Sku = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
PropertyName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
PropertyValue = (
    Annotated[str, StringConstraints(max_length=256)] | bool | int | Annotated[float, Field(allow_inf_nan=False)] | None
)


class TelemetryEvent(Event):
    """One thing a shopper did. The client makes the id, so a resent batch is recognised (consumers dedupe on it).

    Validation context: `{"now": aware datetime}` overrides the clock the future-timestamp rule reads.
    """

    TOPIC: ClassVar[str] = "telemetry"
    TYPE: ClassVar[str] = "sidecart.telemetry.event.v1"

    id: UUID
    type: TelemetryType
    ts: AwareDatetime = Field(description="When it happened; at most 5 minutes ahead of the receiver's clock.")
    user_id: UUID | None = None
    sku: Sku | None = Field(default=None, description="Required for product_view and add_to_cart.")
    properties: dict[PropertyName, PropertyValue] | None = Field(default=None, max_length=MAX_PROPERTIES)

    @field_validator("ts")
    @classmethod
    def _not_in_the_future(cls, value: datetime, info: ValidationInfo) -> datetime:
        context: Any = info.context
        now = context.get("now") if isinstance(context, dict) else None
        if not isinstance(now, datetime):
            now = datetime.now(UTC)
        if value - now > MAX_CLOCK_SKEW:
            raise PydanticCustomError("ts_in_future", "more than 5 minutes in the future")
        return value

    @model_validator(mode="after")
    def _sku_when_the_type_needs_it(self) -> "TelemetryEvent":
        if self.type in TYPES_NEEDING_SKU and self.sku is None:
            raise PydanticCustomError("sku_required", "sku: required when type is '{type}'", {"type": self.type})
        return self


class EventRejection(BaseModel):
    """Why the event at `index` of the batch was refused: the field and the problem."""

    model_config = ConfigDict(frozen=True)

    index: int
    reason: str


class TelemetryBatchAccepted(BaseModel):
    """ingest's 202 answer: how many events were published, and each refused one with why."""

    model_config = ConfigDict(frozen=True)

    accepted: int
    rejected: list[EventRejection] = []
