"""The base every event contract shares: the topic it travels on and the versioned CloudEvent type."""

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    """The data of a CloudEvent. Frozen, and a tolerant reader: unknown fields are ignored, never an error."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    TOPIC: ClassVar[str]
    TYPE: ClassVar[str]
