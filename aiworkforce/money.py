"""One money format everywhere: pages, mails, commands."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CURRENCY_SYMBOL = "$"


def format_money(value) -> str:
    """'$1,234.56'; amounts under a cent keep four decimals ('$0.0042') so small costs stay visible."""
    if value is None or value == "":
        return "—"
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    places = Decimal("0.01") if amount == 0 or amount >= Decimal("0.01") else Decimal("0.0001")
    rounded = amount.quantize(places, rounding=ROUND_HALF_UP)
    if rounded == 0 and amount != 0:
        return f"{sign}<{CURRENCY_SYMBOL}0.0001"
    return f"{sign}{CURRENCY_SYMBOL}{rounded:,}"
