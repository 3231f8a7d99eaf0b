"""SQL aggregates the dashboard needs and Django does not ship: the median of a duration.

PostgreSQL computes it in the same pass as the counts beside it (an ordered-set aggregate, which
takes a FILTER clause like any other), so a period's medians cost no extra query or row transfer.
"""

from __future__ import annotations

from django.db.models import Aggregate, DurationField


class MedianDuration(Aggregate):
    """`percentile_cont(0.5) WITHIN GROUP (ORDER BY expr)`: the median interval, NULL on no rows."""

    function = "percentile_cont"
    name = "MedianDuration"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)%(filter)s"
    output_field = DurationField()
    # Not usable as a window function: PostgreSQL has no OVER for ordered-set aggregates.
    window_compatible = False
