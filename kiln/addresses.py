"""Network addresses a user gives (a flag or an environment variable): a registry host, a registry target,
an image by digest or by tag, and an HTTP endpoint. Each is checked here, once, before anything connects,
so a value the network layer would choke on is one KilnError naming where it came from."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from kiln.arguments import port, shown
from kiln.errors import KilnError

# an OCI repository name: lower-case components joined by '/', separators '.', '_', '__' or dashes
NAME = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
_LABEL = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NAME_FIX = "use lower-case letters and digits separated by '.', '_', '-' or '/'"
_SCHEMES = ("http", "https")
_LOGIN_FIX = "log in with `docker login HOST` or set KILN_REGISTRY_USER and KILN_REGISTRY_PASSWORD instead"


@dataclass(frozen=True)
class ImageReference:
    host: str       # host[:port]
    repo: str
    digest: str     # sha256:<64 hex>


def host(text: str, where: str) -> str:
    """host[:port] as a registry or server is named: a DNS name or IPv4 address, an optional port 1-65535."""
    if "@" in text:   # before anything that quotes the value: a password is never shown
        raise KilnError("the host carries a user name or password", where, _LOGIN_FIX)
    _plain(text, where, "a host")
    if "/" in text or "?" in text or "#" in text:
        raise KilnError(f"'{shown(text)}' is more than a host", where, "give HOST or HOST:PORT only")
    name, colon, number = text.rpartition(":") if ":" in text else (text, "", "")
    if colon:
        port(number, where)
    _hostname(name, text, where)
    return text


def registry_target(text: str, where: str = "--registry") -> tuple[str, str]:
    """HOST[:PORT]/NAMESPACE, the place images are pushed to."""
    registry, slash, namespace = text.strip().partition("/")
    if not slash or not namespace:
        raise KilnError(f"'{shown(text)}' is not HOST[:PORT]/NAMESPACE", where,
                        "write it like registry.example.com/team or 127.0.0.1:5000/kiln")
    host(registry, where)
    if not NAME.match(namespace):
        raise KilnError(f"'{shown(namespace)}' is not a repository namespace", where, _NAME_FIX)
    return registry, namespace


def image_reference(text: str, where: str = "--reference") -> ImageReference:
    """HOST[:PORT]/NAME@sha256:<64 hex>, an image named by its registry and digest."""
    registry, slash, rest = text.strip().partition("/")
    name, at, digest = rest.rpartition("@")
    if not slash or not at:
        raise KilnError(f"'{shown(text, 120)}' is not HOST[:PORT]/NAME@sha256:<64 hex>", where,
                        "give the reference `invoke publish` printed, digest and all")
    host(registry, where)
    if "." not in registry and ":" not in registry and registry != "localhost":  # Docker's rule for a registry name
        raise KilnError(f"'{shown(registry)}' in '{shown(text, 120)}' is not a registry host", where,
                        "start the reference with the registry, e.g. registry.example.com/team/comfyui@sha256:...")
    if not NAME.match(name):
        raise KilnError(f"'{shown(name)}' is not a repository name", where, _NAME_FIX)
    _digest(digest, where)
    return ImageReference(registry, name, digest)


def image_tag(text: str, where: str) -> str:
    """[HOST[:PORT]/]NAME:TAG, optionally @sha256:<64 hex>: an image the engine holds or pulls."""
    rest, at, digest = text.partition("@")
    if at and "/" in digest:   # user@host/...: the '@' is in the host, not before a digest; never shown
        raise KilnError("the image's registry part carries a user name or password", where, _LOGIN_FIX)
    _plain(text, where, "an image")
    first, slash, after = rest.partition("/")
    if at:
        _digest(digest, where)
    if slash and ("." in first or ":" in first or first == "localhost"):   # Docker's rule for a registry part
        host(first, where)
        rest = after
    name, colon, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not NAME.match(name):
        raise KilnError(f"'{shown(name)}' in '{shown(text)}' is not a repository name", where, _NAME_FIX)
    if colon and not _TAG.match(tag):
        raise KilnError(f"'{shown(tag)}' in '{shown(text)}' is not a tag", where,
                        "a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'")
    return text


def endpoint(text: str, where: str) -> str:
    """An http(s) base URL: scheme://host[:port][/path], nothing else. Returned without a trailing '/'."""
    url = text.strip().rstrip("/")
    if "@" in url.partition("://")[2].partition("/")[0]:   # before anything that quotes the URL
        raise KilnError("the URL carries credentials (user:password@)", where,
                        "give scheme://host[:port][/path] only; a token goes in its own variable")
    _plain(url, where, "a URL")
    try:
        parts = urlsplit(url)
    except ValueError:   # an unclosed '[', or brackets around something that is no IPv6 address
        raise KilnError(f"'{shown(url)}' is not a URL", where, "give it like https://host[:port][/path]") from None
    if parts.scheme.lower() not in _SCHEMES or not parts.netloc:
        raise KilnError(f"'{shown(url)}' is not an http(s) URL", where, "give it like https://host[:port][/path]")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise KilnError(f"'{shown(url)}' carries a query or a fragment", where, "give scheme://host[:port][/path] only")
    netloc = parts.netloc
    if netloc.startswith("["):   # an IPv6 literal, [addr] or [addr]:port; urlsplit checked the address
        after = netloc.partition("]")[2]
        if after and not after.startswith(":"):
            raise KilnError(f"'{shown(netloc)}' is not a host", where, "write an IPv6 address as [addr] or [addr]:port")
        if after:
            port(after[1:], where)
    else:
        host(netloc, where)
    return url


def _digest(digest: str, where: str) -> None:
    if not _DIGEST.match(digest):
        raise KilnError(f"'{shown(digest)}' is not a digest", where, "write sha256: and 64 lower-case hex digits")


def _plain(text: str, where: str, what: str) -> None:
    """Printable ASCII without spaces: what every address above is made of."""
    if not text:
        raise KilnError(f"no {what} given", where, f"give {what}")
    if not text.isascii():
        raise KilnError(f"'{shown(text)}' holds non-ASCII characters", where,
                        "write an international name in its ASCII (xn--...) form")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise KilnError(f"'{shown(text)}' holds spaces or control characters", where, f"give {what} without them")


def _hostname(name: str, text: str, where: str) -> None:
    try:
        ipaddress.IPv4Address(name)
        return
    except ValueError:
        pass
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise KilnError(f"'{shown(text)}' is not a host name", where,
                        "use letters, digits and '-' in dot-separated labels (or an IPv4 address), "
                        "like registry.example.com:5000")

