"""Events: the CloudEvents envelope in Kafka's binary mode, and the registry of event types.

Every event type's `data` is a pydantic model declared once here and used by producer and
consumer alike. The Kafka topic is the producing service's (`payments.events`) and the Kafka key
is the aggregate id, so one aggregate's events stay in order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.clock import as_utc, utcnow
from shared.ids import new_id

TYPE_PREFIX = "vn.quangtri."
_FORMAT = JSONFormat()
REGISTRY: dict[str, type[EventData]] = {}


class UndecodableEvent(ValueError):
    """A message that can never be handled: not a CloudEvent, an unknown version, or bad data."""


class EventData(BaseModel):
    """Base of every event's `data`. Subclasses set `event_type` and the field that keys it."""

    # Consumers ignore fields they do not know yet, so a producer may add optional fields safely.
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str] = ""
    key_field: ClassVar[str] = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if not cls.event_type:
            return
        if not cls.event_type.startswith(TYPE_PREFIX) or not cls.event_type.rsplit(".", 1)[-1].startswith("v"):
            raise TypeError(f"{cls.__name__}: event type must be reverse-DNS and versioned: {cls.event_type}")
        if cls.key_field not in cls.model_fields:
            raise TypeError(f"{cls.__name__}: key_field {cls.key_field!r} is not a field")
        if cls.event_type in REGISTRY and REGISTRY[cls.event_type] is not cls:
            raise TypeError(f"event type registered twice: {cls.event_type}")
        REGISTRY[cls.event_type] = cls

    @classmethod
    def topic(cls) -> str:
        return topic_of(cls.event_type)

    def key(self) -> str:
        return str(getattr(self, self.key_field))


def topic_of(event_type: str) -> str:
    """`vn.quangtri.payments.payment_intent.succeeded.v1` → `payments.events`."""
    return event_type[len(TYPE_PREFIX):].split(".", 1)[0] + ".events"


T = TypeVar("T", bound=EventData)


@dataclass(frozen=True)
class Envelope(Generic[T]):
    """One CloudEvent: its attributes and its typed data."""

    id: str
    type: str
    source: str
    subject: str
    time: datetime
    data: T

    @classmethod
    def wrap(cls, data: T, *, source: str, event_id: str | None = None) -> Envelope[T]:
        if not data.event_type:
            raise TypeError(f"{type(data).__name__} is not a registered event type")
        return cls(id=event_id or new_id("evt"), type=data.event_type, source=source,
                   subject=data.key(), time=utcnow(), data=data)

    @property
    def topic(self) -> str:
        return topic_of(self.type)

    @property
    def key(self) -> str:
        return self.subject

    def to_document(self) -> dict[str, Any]:
        """The outbox record's fields."""
        return {"_id": self.id, "type": self.type, "source": self.source, "subject": self.subject,
                "time": self.time, "topic": self.topic, "data": self.data.model_dump(mode="json")}

    @staticmethod
    def message_from_document(doc: dict[str, Any]) -> KafkaMessage:
        """A Kafka message straight from an outbox record, without re-validating the data."""
        event = CloudEvent(attributes={
            "id": doc["_id"], "type": doc["type"], "source": doc["source"], "subject": doc["subject"],
            "time": as_utc(doc["time"]), "specversion": "1.0", "datacontenttype": "application/json",
        }, data=doc["data"])
        return to_binary(event, _FORMAT, key_mapper=lambda _: doc["subject"].encode())

    def to_kafka(self) -> KafkaMessage:
        return self.message_from_document(self.to_document())

    @classmethod
    def from_kafka(cls, headers: list[tuple[str, bytes]] | dict[str, bytes], key: bytes | None,
                   value: bytes | None) -> Envelope[EventData]:
        """Decode a Kafka record. Raises UndecodableEvent for anything that no retry can fix."""
        hdrs = dict(headers)
        try:
            event = from_binary(KafkaMessage(headers=hdrs, key=key, value=value or b"null"), _FORMAT)
            attrs = event.get_attributes()
        except Exception as exc:  # the SDK raises several kinds for malformed input
            raise UndecodableEvent(f"not a CloudEvent in binary mode: {exc}") from exc
        if attrs.get("specversion") != "1.0":
            raise UndecodableEvent(f"unsupported specversion {attrs.get('specversion')!r}")
        model = REGISTRY.get(attrs["type"])
        if model is None:
            raise UndecodableEvent(f"unknown event type {attrs['type']!r}")
        data = event.get_data()
        if isinstance(data, (bytes, str)):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise UndecodableEvent(f"data is not JSON: {exc}") from exc
        try:
            parsed = model.model_validate(data)
        except ValidationError as exc:
            raise UndecodableEvent(f"data does not match {model.__name__}: {exc}") from exc
        return cls(id=attrs["id"], type=attrs["type"], source=attrs["source"],
                   subject=attrs.get("subject") or (key or b"").decode(), time=as_utc(attrs["time"]), data=parsed)


def event_type_of(headers: list[tuple[str, bytes]]) -> str | None:
    for name, value in headers:
        if name == "ce_type":
            return value.decode("utf-8", "replace")
    return None


# Register every event type by importing the modules that declare them.
from shared.events import merchants, payments, tourism  # noqa: E402,F401
