"""Delivery channels: e-mail through SMTP (plain, STARTTLS, implicit TLS) and SMS through an
HTTP gateway. Each raises :class:`DeliveryError` with a short, secret-free reason."""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate

from dmp.config import Settings


class DeliveryError(Exception):
    """The channel refused or failed; retried with back-off."""


class NoChannel(Exception):
    """No such channel is configured (not retried: the notice is skipped)."""


def send_email(settings: Settings, to: str, subject: str, body: str, message_id: str) -> None:
    if not settings.smtp_host:
        raise NoChannel("no SMTP server configured")
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg["Date"] = formatdate(localtime=False)
    msg.set_content(body)
    context = ssl.create_default_context(
        cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None
    )
    try:
        server: smtplib.SMTP
        if settings.smtp_security == "tls":
            server = smtplib.SMTP_SSL(
                settings.smtp_host, settings.smtp_port, context=context, timeout=30
            )
        else:
            server = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30)
        with server:
            if settings.smtp_security == "starttls":
                server.starttls(context=context)
            if settings.smtp_user:
                server.login(settings.smtp_user, settings.smtp_password)
            server.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"smtp: {type(exc).__name__}: {str(exc)[:120]}") from None


def send_sms(settings: Settings, to: str, text: str, message_id: str) -> None:
    if not settings.sms_url:
        raise NoChannel("no SMS gateway configured")
    request = urllib.request.Request(  # noqa: S310 - the operator's configured gateway
        settings.sms_url,
        data=json.dumps({"to": to, "text": text, "id": message_id}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {settings.sms_token}",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            if not 200 <= response.status < 300:
                raise DeliveryError(f"sms gateway: HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"sms gateway: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"sms gateway: {type(exc).__name__}") from None
