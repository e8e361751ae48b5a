"""The base every event contract shares: the topic it travels on and the versioned CloudEvent type."""

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    """The data of a CloudEvent. Frozen, and a tolerant reader: unknown fields are ignored, never an error."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    TOPIC: ClassVar[str]
    TYPE: ClassVar[str]
    # The fields that name the business fact an event states (an order's completion: its order_id). A fact can be
    # published more than once, each time under a new CloudEvent id (Dapr's outbox gives every publication its own),
    # so consumers do its work once per fact: per `fact_id()`. Exported as the schema's "x-fact-key". Empty: the
    # CloudEvent id names the fact (the publisher sets it, as ingest does with the client's event id).
    FACT_KEY: ClassVar[tuple[str, ...]] = ()

    def fact_id(self) -> str | None:
        """The same for every publication of this fact (its type and FACT_KEY's values); None without a FACT_KEY."""
        if not self.FACT_KEY:
            return None
        return ":".join([self.TYPE, *(str(getattr(self, name)) for name in self.FACT_KEY)])
