"""The back office as a whole: every changelist and autocomplete pages through an ordered
queryset (no UnorderedObjectListWarning), and every admin page carries the favicon."""

from __future__ import annotations

import warnings

import pytest
from django.contrib import admin
from django.core.paginator import UnorderedObjectListWarning
from django.urls import reverse

from employees.demo import load_demo_workforce

pytestmark = pytest.mark.django_db


def _autocomplete_sources() -> list[tuple[str, str, str]]:
    """(app_label, model_name, field_name) of every autocomplete field, inlines included."""
    sources = []
    for model, model_admin in admin.site._registry.items():
        owners = [(model, model_admin)] + [(inline.model, inline) for inline in model_admin.inlines]
        for owner, owner_admin in owners:
            for field_name in owner_admin.autocomplete_fields:
                sources.append((owner._meta.app_label, owner._meta.model_name, field_name))
    return sorted(set(sources))


@pytest.fixture
def demo(superuser):
    load_demo_workforce(owner=superuser)


def test_every_changelist_pages_an_ordered_queryset(admin_client, demo):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnorderedObjectListWarning)
        for model in admin.site._registry:
            opts = model._meta
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
            assert admin_client.get(url).status_code == 200, url
            # Searching and the "show all" link page the same queryset another way.
            assert admin_client.get(url, {"q": "a"}).status_code == 200, url


def test_every_autocomplete_pages_an_ordered_queryset(admin_client, demo):
    sources = _autocomplete_sources()
    assert ("employees", "employee", "team") in sources
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnorderedObjectListWarning)
        for app_label, model_name, field_name in sources:
            response = admin_client.get(
                reverse("admin:autocomplete"),
                {"app_label": app_label, "model_name": model_name, "field_name": field_name},
            )
            assert response.status_code == 200, (app_label, model_name, field_name)
            assert "results" in response.json()


def test_admin_pages_carry_the_favicon_and_keep_the_branding(admin_client, demo):
    from employees.models import Employee

    ava = Employee.objects.get(handle="ava-support")
    for url in [
        reverse("admin:index"),
        reverse("admin:employees_employee_changelist"),
        reverse("admin:employees_employee_change", args=[ava.pk]),
    ]:
        text = admin_client.get(url).text
        assert 'rel="icon"' in text and "favicon.svg" in text, url
        assert "AI Workforce back office" in text, url
