"""Pages of a search whose matches are counted only as far as a page line needs."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from django.core.paginator import Paginator

# A search counts its matches up to this many (and the requested page's): "more than 1,000".
SEARCH_COUNT_CAP = 1000


def page_number(value) -> int:
    """The page asked for, as a number (1 for anything that is not one)."""
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1


class SearchPaginator(Paginator):
    """A search's pages, counted only as far as needed.

    When the first page is not full its rows are the count (one statement); otherwise matches
    are counted up to SEARCH_COUNT_CAP + 1, or one past the requested page if that is further
    (so "Older" always works). A broad search would otherwise read every match.
    `count_at_most(cap)` returns the count, or cap + 1 when there are more.
    """

    def __init__(
        self, object_list, per_page, *, count_at_most: Callable[[int], int], wanted_page=1
    ) -> None:
        super().__init__(object_list, per_page)
        self.cap = max(SEARCH_COUNT_CAP, page_number(wanted_page) * per_page)
        self._count_at_most = count_at_most
        self._first_rows: list | None = None

    @property
    def capped(self) -> bool:
        return self.count > self.cap

    @cached_property
    def count(self) -> int:
        self._first_rows = list(self.object_list[: self.per_page + 1])
        if len(self._first_rows) <= self.per_page:
            return len(self._first_rows)
        return self._count_at_most(self.cap)

    def page(self, number):
        number = self.validate_number(number)
        if number == 1 and self._first_rows is not None:
            return self._get_page(self._first_rows[: self.per_page], number, self)
        return super().page(number)
