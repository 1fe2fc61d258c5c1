"""Keep credentials out of exports: credential-like settings become `${ENV}` references.

A Spark setting or a stage option whose key looks like a credential (a password, a
secret, a token, an access key…) is replaced by a reference to an environment variable
named after the key; the exporters list those variables in their README and the
bundle loader resolves them from the environment at run time. This module only
rewrites values; it never reads the environment except in `resolve`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from jupyter_dataflow.core.errors import ConfigError

# Words that mark a key as holding a credential, matched on the lowercased key with
# separators removed ("fs.s3a.secret.key" -> "fss3asecretkey").
_CREDENTIAL_WORDS = ("password", "passwd", "secret", "token", "accesskey", "credential", "privatekey",
                     "apikey", "sastoken", "signature", "clientkey")
# Keys ending like this name where a credential is, or how it is obtained, not the credential.
_NOT_A_VALUE = ("file", "path", "provider", "providers", "class", "type", "enabled", "name", "location", "dir")
_REFERENCE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


@dataclass(frozen=True)
class SecretRef:
    """One redacted value: where it was and the environment variable that supplies it."""

    where: str     # "spark conf" or "stage 'orders' option"
    key: str
    env: str

    @property
    def reference(self) -> str:
        return "${" + self.env + "}"


def looks_like_credential(key: str) -> bool:
    """Whether a setting's key suggests its value is a credential.

    Args:
        key: a Spark setting or reader/writer option name.

    Returns:
        True for keys such as `spark.hadoop.fs.s3a.secret.key` or `password`, False for
        keys that only point at credentials (`...oauthTokenFile`, `...credentials.provider`).
    """
    lowered = key.lower()
    squashed = re.sub(r"[^a-z0-9]", "", lowered)
    if not any(word in squashed for word in _CREDENTIAL_WORDS):
        return False
    last = re.split(r"[^a-z0-9]", lowered)[-1]
    return not any(last.endswith(suffix) for suffix in _NOT_A_VALUE)


def env_name(key: str, prefix: str = "") -> str:
    """The environment variable for a key: `spark.hadoop.fs.s3a.secret.key` -> `SPARK_HADOOP_FS_S3A_SECRET_KEY`."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", f"{prefix}_{key}" if prefix else key).strip("_").upper()
    return name if not name[:1].isdigit() else f"_{name}"


def redact(values: Mapping[str, str], where: str, prefix: str = "") -> tuple[dict[str, str], list[SecretRef]]:
    """Replace credential-like values by `${ENV}` references.

    Args:
        values: settings or options (key -> value).
        where: a label for the README ("spark conf", "stage 'orders' option").
        prefix: prepended to environment variable names (used for stage options).

    Returns:
        The values with credentials replaced, and one `SecretRef` per replaced value.
        Values that already are `${ENV}` references are kept and listed.
    """
    out: dict[str, str] = {}
    refs: list[SecretRef] = []
    for key in sorted(values):
        value = values[key]
        if not looks_like_credential(key):
            out[key] = value
            continue
        existing = _REFERENCE.fullmatch(value.strip())
        ref = SecretRef(where, key, existing.group(1) if existing else env_name(key, prefix))
        out[key] = ref.reference
        refs.append(ref)
    return out, refs


def references(values: Iterable[str]) -> list[str]:
    """The environment variables referenced as `${ENV}` in some values, sorted."""
    return sorted({m.group(1) for v in values for m in _REFERENCE.finditer(v)})


def resolve(values: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Replace `${ENV}` references by the environment's values.

    Raises:
        ConfigError: a referenced variable is not set (all missing names are listed).
    """
    env = os.environ if environ is None else environ
    missing = [name for name in references(values.values()) if name not in env]
    if missing:
        raise ConfigError("set the environment variables holding the redacted credentials: " + ", ".join(missing))
    return {k: _REFERENCE.sub(lambda m: env[m.group(1)], v) for k, v in values.items()}
