"""/mcp/ (the MCP endpoint) and the personal API tokens page under /accounts/."""

from django.urls import path

from aiworkforce.mcp_server import http, views

app_name = "mcp_server"

urlpatterns = [
    path("mcp/", http.mcp_endpoint, name="endpoint"),
    # Without the slash too: a POST to /mcp must not meet APPEND_SLASH's redirect.
    path("mcp", http.mcp_endpoint),
    path("accounts/tokens/", views.api_tokens, name="tokens"),
    path("accounts/tokens/new/", views.api_token_create_view, name="token_create"),
    path("accounts/tokens/<int:pk>/revoke/", views.api_token_revoke_hx, name="token_revoke_hx"),
]
