"""Where the client finds the coordinator, as the `dockyard` CLI does: an argument wins,
then `DOCKYARD_ENDPOINT` / `DOCKYARD_TOKEN` / `DOCKYARD_TLS_CA`, then the TOML file named
by `DOCKYARD_CONFIG` (keys `endpoint`, `token`, `tls_ca`), then the default endpoint."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import List, Optional

from .errors import DockyardError

DEFAULT_ENDPOINT = "http://127.0.0.1:50051"
_KEYS = ("endpoint", "token", "tls_ca")


@dataclass(frozen=True)
class Settings:
    endpoints: List[str]
    token: Optional[str]
    tls_ca: Optional[str]


def _read_toml_any(path: str) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.9 and 3.10 only
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise DockyardError(f"cannot read {path}: {e}") from None
    except Exception as e:
        raise DockyardError(f"{path} is not valid TOML: {e}") from None


def _read_toml(path: str) -> dict:
    data = _read_toml_any(path)
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise DockyardError(f"{path}: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(_KEYS)}")
    return data


def resolve(
    endpoint: Optional[str] = None,
    token: Optional[str] = None,
    tls_ca: Optional[str] = None,
    config: Optional[str] = None,
) -> Settings:
    path = config or os.environ.get("DOCKYARD_CONFIG")
    file = _read_toml(path) if path else {}

    def pick(arg: Optional[str], key: str) -> Optional[str]:
        if arg:
            return arg
        env = os.environ.get(f"DOCKYARD_{key.upper()}")
        if env:
            return env
        v = file.get(key)
        return str(v) if v else None

    ep = pick(endpoint, "endpoint") or DEFAULT_ENDPOINT
    endpoints = [e.strip() for e in ep.split(",") if e.strip()]
    if not endpoints:
        raise DockyardError("no coordinator endpoint given; pass endpoint='http://HOST:50051' or set DOCKYARD_ENDPOINT")
    for e in endpoints:
        if not (e.startswith("http://") or e.startswith("https://")):
            raise DockyardError(f"'{e}' is not a coordinator endpoint; use a URL like http://127.0.0.1:50051")
    return Settings(endpoints=endpoints, token=pick(token, "token"), tls_ca=pick(tls_ca, "tls_ca"))
