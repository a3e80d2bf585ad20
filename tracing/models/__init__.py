"""SQLModel tables and the API's request/response schemas, one module per domain."""

from tracing.models.agency import Agency
from tracing.models.audit import AccessLogEntry, AuditCheckpoint, AuditEntry, AuditHead
from tracing.models.exchange import Exchange
from tracing.models.notify import DeliveryAttempt, Event, EventFeedHead, WebhookDelivery
from tracing.models.operation import Operation, OperationRecovery
from tracing.models.registry import (
    CrossCheck,
    ManufacturerAlias,
    Registry,
    RegistryNotice,
    RegistryRecord,
    RegistryRecordKey,
)
from tracing.models.trace_request import IdempotencyKey, TraceRequest, TraceRequestParty

__all__ = [
    "AccessLogEntry",
    "Agency",
    "AuditCheckpoint",
    "AuditEntry",
    "AuditHead",
    "CrossCheck",
    "DeliveryAttempt",
    "Event",
    "EventFeedHead",
    "Exchange",
    "IdempotencyKey",
    "ManufacturerAlias",
    "Operation",
    "OperationRecovery",
    "Registry",
    "RegistryNotice",
    "RegistryRecord",
    "RegistryRecordKey",
    "TraceRequest",
    "TraceRequestParty",
    "WebhookDelivery",
]
