"""Logistics: milestones of outbound shipments."""

from __future__ import annotations

from typing import ClassVar, Literal

from .base import CanonicalModel, Identifier, Timestamp


class ShipmentMilestone(CanonicalModel):
    """A step reached by an outbound shipment, from a WMS or a carrier."""

    type_name: ClassVar[str] = "shipment_milestone"

    shipment_id: Identifier
    """The shipment (delivery, consignment) identifier."""
    order_ref: str | None = None
    """The order the shipment fulfils, e.g. a sales order name."""
    milestone: Literal["picked", "packed", "shipped", "in_transit", "delivered", "exception"]
    """`picked`, `packed`: warehouse steps. `shipped`: handed to the carrier. `in_transit`:
    a carrier scan on the way. `delivered`: proof of delivery. `exception`: delay, damage,
    failed delivery or any carrier exception."""
    carrier: str | None = None
    """The carrier, e.g. `DHL`."""
    tracking_number: str | None = None
    """The carrier's tracking number."""
    location: str | None = None
    """Where the milestone happened (site, hub or city), when known."""
    occurred_at: Timestamp
    """When the milestone happened, not when it was reported."""
