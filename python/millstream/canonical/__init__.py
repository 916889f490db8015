"""Canonical manufacturing entities (DESIGN.md decision 3).

Versioned pydantic models: each class is one version of one entity type, and its JSON Schema
(`model_json_schema(mode="serialization")`) is what the Rust core enforces on mapped entities.
Identifiers are strings, timestamps are UTC instants, enumerations are `Literal`s.
"""

from __future__ import annotations

from .base import CanonicalModel
from .inventory import InventoryMovement, StockLevel
from .logistics import ShipmentMilestone
from .production import ProductionOrder
from .purchasing import GoodsReceipt
from .quality import QualityHold
from .sales import SalesOrder
from .telemetry import MachineTelemetry

CANONICAL_MODELS: dict[str, type[CanonicalModel]] = {
    m.type_name: m
    for m in (
        MachineTelemetry,
        InventoryMovement,
        StockLevel,
        ProductionOrder,
        SalesOrder,
        GoodsReceipt,
        QualityHold,
        ShipmentMilestone,
    )
}
"""Every canonical model, keyed by its `type_name`."""

__all__ = [
    "CANONICAL_MODELS",
    "CanonicalModel",
    "GoodsReceipt",
    "InventoryMovement",
    "MachineTelemetry",
    "ProductionOrder",
    "QualityHold",
    "SalesOrder",
    "ShipmentMilestone",
    "StockLevel",
]
