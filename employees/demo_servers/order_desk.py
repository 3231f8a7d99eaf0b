"""The demo's order desk: a small MCP server (stdio) standing in for a shop's order system.

The demo registers it as the MCP server "orders" and the worker starts it when Ava needs it:
`lookup_order` reads an order (read-only: runs at once), `refund_order` refunds one (destructive:
waits for a person's approval). Refunds are written to the ledger file named by
ORDER_DESK_LEDGER, one JSON line each, so a person can see what was done; an order is never
refunded twice. It needs nothing but the `mcp` package: no Django, no network.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

ORDERS = {
    "A-1001": {
        "customer": "jane@example.com",
        "items": ["Stoneware mug, blue (2)"],
        "total": 36.00,
        "status": "delivered 27 Nov",
    },
    "A-1002": {
        "customer": "jane@example.com",
        "items": ["Teapot, 1.2 l", "Tea towel"],
        "total": 84.00,
        "status": "delivered 30 Nov; the customer reported it arrived broken",
    },
    "A-1003": {
        "customer": "omar@example.com",
        "items": ["Espresso cups (set of 4)"],
        "total": 48.50,
        "status": "shipped 1 Dec, in transit",
    },
    "A-1004": {
        "customer": "li@example.com",
        "items": ["Serving bowl"],
        "total": 59.00,
        "status": "awaiting stock, ships 9 Dec",
    },
}


def _ledger() -> Path | None:
    path = os.environ.get("ORDER_DESK_LEDGER")
    return Path(path) if path else None


def _refunded(order_id: str) -> dict | None:
    ledger = _ledger()
    if ledger is None or not ledger.exists():
        return None
    for line in ledger.read_text().splitlines():
        entry = json.loads(line)
        if entry["order_id"] == order_id:
            return entry
    return None


def build_server() -> MCPServer:
    server = MCPServer("order-desk")

    @server.tool(
        annotations=ToolAnnotations(title="Look an order up", read_only_hint=True),
        structured_output=False,
    )
    def lookup_order(order_id: str) -> str:
        """An order's customer, items, total and delivery status, by its number (e.g. A-1002)."""
        order = ORDERS.get(order_id.strip().upper())
        if order is None:
            raise ValueError(f"No order {order_id}. Order numbers look like A-1001.")
        refund = _refunded(order_id.strip().upper())
        refunded = f" Refunded ${refund['amount']:.2f} on {refund['at']}." if refund else ""
        return (
            f"Order {order_id.upper()} for {order['customer']}: {', '.join(order['items'])}; "
            f"total ${order['total']:.2f}; {order['status']}.{refunded}"
        )

    @server.tool(
        annotations=ToolAnnotations(
            title="Refund an order", read_only_hint=False, destructive_hint=True
        ),
        structured_output=False,
    )
    def refund_order(order_id: str, reason: str) -> str:
        """Refund an order in full to the customer's card. It cannot be undone."""
        order_id = order_id.strip().upper()
        order = ORDERS.get(order_id)
        if order is None:
            raise ValueError(f"No order {order_id}; nothing was refunded.")
        earlier = _refunded(order_id)
        if earlier is not None:
            raise ValueError(f"Order {order_id} was already refunded on {earlier['at']}.")
        entry = {
            "order_id": order_id,
            "amount": order["total"],
            "reason": reason[:500],
            "at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        }
        ledger = _ledger()
        if ledger is not None:
            ledger.parent.mkdir(parents=True, exist_ok=True)
            with ledger.open("a") as file:
                file.write(json.dumps(entry) + "\n")
        return f"Refunded ${order['total']:.2f} on order {order_id} to {order['customer']}."

    return server


if __name__ == "__main__":
    build_server().run("stdio")
