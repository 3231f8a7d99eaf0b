"""/mail/<esp>/inbound/: the URL to give each ESP's inbound route (anymail's paths and names)."""

from __future__ import annotations

from anymail.webhooks.amazon_ses import AmazonSESInboundWebhookView
from anymail.webhooks.brevo import BrevoInboundWebhookView
from anymail.webhooks.mailersend import MailerSendInboundWebhookView
from anymail.webhooks.mailgun import MailgunInboundWebhookView
from anymail.webhooks.mailjet import MailjetInboundWebhookView
from anymail.webhooks.postal import PostalInboundWebhookView
from anymail.webhooks.postmark import PostmarkInboundWebhookView
from anymail.webhooks.resend import ResendInboundWebhookView
from anymail.webhooks.sendgrid import SendGridInboundWebhookView
from anymail.webhooks.sparkpost import SparkPostInboundWebhookView
from django.urls import path, re_path

from mailboxes.views import inbound_view

app_name = "mail"
urlpatterns = [
    path(
        "amazon_ses/inbound/",
        inbound_view(AmazonSESInboundWebhookView, signed=False),
        name="amazon_ses_inbound",
    ),
    path(
        "brevo/inbound/", inbound_view(BrevoInboundWebhookView, signed=False), name="brevo_inbound"
    ),
    path(
        "mailersend/inbound/",
        inbound_view(MailerSendInboundWebhookView, signed=True),
        name="mailersend_inbound",
    ),
    # Mailgun posts raw MIME when the URL contains "mime": either path works.
    re_path(
        r"^mailgun/inbound(_mime)?/$",
        inbound_view(MailgunInboundWebhookView, signed=True),
        name="mailgun_inbound",
    ),
    path(
        "mailjet/inbound/",
        inbound_view(MailjetInboundWebhookView, signed=False),
        name="mailjet_inbound",
    ),
    path(
        "postal/inbound/",
        inbound_view(PostalInboundWebhookView, signed=True),
        name="postal_inbound",
    ),
    path(
        "postmark/inbound/",
        inbound_view(PostmarkInboundWebhookView, signed=False),
        name="postmark_inbound",
    ),
    path(
        "resend/inbound/",
        inbound_view(ResendInboundWebhookView, signed=False),
        name="resend_inbound",
    ),
    path(
        "sendgrid/inbound/",
        inbound_view(SendGridInboundWebhookView, signed=False),
        name="sendgrid_inbound",
    ),
    path(
        "sparkpost/inbound/",
        inbound_view(SparkPostInboundWebhookView, signed=False),
        name="sparkpost_inbound",
    ),
]
