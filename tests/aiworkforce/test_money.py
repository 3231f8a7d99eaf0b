from decimal import Decimal

import pytest

from aiworkforce.money import format_money


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (Decimal("0"), "$0.00"),
        (Decimal("1234.5"), "$1,234.50"),
        (Decimal("0.004217"), "$0.0042"),
        (Decimal("0.00000001"), "<$0.0001"),
        (Decimal("-2.005"), "-$2.01"),
        ("3", "$3.00"),
        (None, "—"),
        ("not money", "not money"),
    ],
)
def test_money_is_shown_one_way(value, shown):
    assert format_money(value) == shown
