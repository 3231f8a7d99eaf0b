from django.apps import AppConfig


class MailboxesConfig(AppConfig):
    name = "mailboxes"
    verbose_name = "Mail"

    def ready(self) -> None:
        from anymail.signals import inbound

        from mailboxes.receivers import on_inbound_mail

        # anymail has verified and parsed the delivery; the receiver only hands it on.
        inbound.connect(on_inbound_mail, dispatch_uid="mailboxes.on_inbound_mail")
