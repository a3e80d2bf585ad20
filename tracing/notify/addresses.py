"""Where webhooks may be sent: a guard against server-side request forgery.

A webhook URL is resolved, and every address it resolves to must be public (globally routable):
private, loopback, link-local, shared, reserved, multicast and unspecified addresses are refused,
unless a setting allows them. Development allows loopback (local receivers, the tests). The check
runs when an admin sets the URL and again before every delivery, and the delivery then connects to
the address that was checked, so a name that later resolves elsewhere (DNS rebinding) cannot
redirect a post to an internal service.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

from tracing.config import Settings
from tracing.errors import Unprocessable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookAddressRefused(Unprocessable):
    """The URL is not one webhooks may be sent to (a configuration problem, not a passing fault)."""


class WebhookAddressUnresolved(Unprocessable):
    """The URL's host does not resolve now (possibly a passing fault)."""


@dataclass(frozen=True)
class AddressPolicy:
    allow_private: bool = False
    allow_loopback: bool = False
    allow_http: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressPolicy:
        development = settings.env == "development"
        return cls(
            allow_private=settings.webhook_allow_private_addresses,
            allow_loopback=development or settings.webhook_allow_private_addresses,
            allow_http=development or settings.webhook_allow_http,
        )


def refusal(address: IPAddress, policy: AddressPolicy) -> str | None:
    """Why webhooks may not go to this address, or None when they may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return None if policy.allow_loopback else "a loopback address"
    if address.is_global and not address.is_multicast:
        return None
    if policy.allow_private and not (address.is_multicast or address.is_unspecified):
        return None
    return "a private, link-local or reserved address"


def check_url_shape(url: str, policy: AddressPolicy) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise WebhookAddressRefused(f"webhook URL is not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise WebhookAddressRefused("webhook URL must be an http or https URL with a host")
    if parsed.scheme == "http" and not policy.allow_http:
        raise WebhookAddressRefused("webhook URL must use https in production")
    if parsed.userinfo:
        raise WebhookAddressRefused("webhook URL must not carry a user name or password")
    return parsed


async def resolve_allowed(url: str, policy: AddressPolicy) -> tuple[httpx.URL, list[IPAddress]]:
    """The parsed URL and the addresses it resolves to, all allowed; raises why not otherwise."""
    parsed = check_url_shape(url, policy)
    host = parsed.host
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise WebhookAddressUnresolved(f"webhook host {host} does not resolve") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not addresses:
        raise WebhookAddressUnresolved(f"webhook host {host} does not resolve")
    for address in addresses:
        reason = refusal(address, policy)
        if reason is not None:
            raise WebhookAddressRefused(
                f"webhook host {host} resolves to {reason} ({address}); webhooks are only sent to"
                " public addresses (TRACING_WEBHOOK_ALLOW_PRIVATE_ADDRESSES allows others)"
            )
    return parsed, addresses


def pinned(url: httpx.URL, address: IPAddress) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """The URL rewritten to connect to the checked address, the Host header naming the original
    host, and (for https) the TLS server name to verify the certificate against."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    host_header = host if url.port is None else f"{host}:{url.port}"
    target = url.copy_with(host=str(address))
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return target, {"Host": host_header}, extensions
