"""Secrets kept out of gozen.yaml: `${ENV_VAR}` in any string, `KEY_file: PATH` for a secret KEY.

Both are resolved on the raw YAML mapping before it is validated, so the config tree only ever
holds the values. A secret field is one whose pydantic Field carries `json_schema_extra={"secret": ...}`;
`gozen config show` prints those masked.
"""

from __future__ import annotations

import os
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

FILE_SUFFIX = "_file"
MASK = "***"
SECRET_FILE_MAX_BYTES = 64 * 1024

# `$${` is a literal `${`; `${NAME}` is the environment variable NAME; any other `${` is a mistake.
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SecretError(ValueError):
    """A `${VAR}` that is not set or a `_file` that cannot be read; the message names the key path."""


@dataclass
class SecretFiles:
    """The `KEY_file` files a config was read from, by key path (for the permission warning)."""

    paths: dict[str, Path] = field(default_factory=dict)


def expand_env(data: Any, loc: str = "") -> Any:
    """`data` with `${VAR}` replaced by $VAR in every string (keys are left alone)."""
    if isinstance(data, dict):
        return {k: expand_env(v, _join(loc, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, f"{loc}[{i}]") for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:
        return _REFERENCE.sub(lambda m: _substitute(m, loc or "(top level)"), data)
    return data


def _substitute(m: re.Match[str], loc: str) -> str:
    if m.group(0) == "$${":
        return "${"
    name = m.group(1)
    if name is None:
        raise SecretError(f"{loc}: an unclosed ${{ (write $${{ for a literal ${{)")
    if not _ENV_NAME.match(name):
        raise SecretError(f"{loc}: ${{{name}}} is not an environment variable name (write $${{ for a literal ${{)")
    value = os.environ.get(name)
    if value is None:
        raise SecretError(f"{loc}: the environment variable {name} is not set")
    return value


def read_secret_files(data: Any, model: type[BaseModel], base_dir: Path, found: SecretFiles, loc: str = "") -> Any:
    """`data` with each `KEY_file: PATH` of a secret KEY of `model` replaced by `KEY: <the file's text>`.

    A relative PATH is under base_dir (the config file's directory); one trailing newline is dropped.
    """
    if not isinstance(data, dict):
        return data
    out: dict[Any, Any] = {}
    for key, value in data.items():
        name = key[: -len(FILE_SUFFIX)] if isinstance(key, str) and key.endswith(FILE_SUFFIX) else None
        if name and key not in model.model_fields and is_secret(model, name):
            if name in data:
                raise SecretError(f"{_join(loc, key)}: give either {name} or {key}, not both")
            path = _secret_path(value, base_dir, _join(loc, key))
            out[name] = _read_secret(path, _join(loc, key))
            found.paths[_join(loc, key)] = path
            continue
        sub = (
            _submodel(model.model_fields[key].annotation)
            if isinstance(key, str) and key in model.model_fields
            else None
        )
        if sub is not None and isinstance(value, list):
            value = [read_secret_files(v, sub, base_dir, found, f"{_join(loc, key)}[{i}]") for i, v in enumerate(value)]
        elif sub is not None:
            value = read_secret_files(value, sub, base_dir, found, _join(loc, key))
        out[key] = value
    return out


def _secret_path(value: Any, base_dir: Path, loc: str) -> Path:
    if not isinstance(value, str) or not value:
        raise SecretError(f"{loc}: must be a file path, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def _read_secret(path: Path, loc: str) -> str:
    try:
        with path.open("rb") as f:
            raw = f.read(SECRET_FILE_MAX_BYTES + 1)
    except OSError as err:
        raise SecretError(f"{loc}: cannot read {path}: {err.strerror}") from None
    if len(raw) > SECRET_FILE_MAX_BYTES:
        raise SecretError(f"{loc}: {path} is larger than {SECRET_FILE_MAX_BYTES} bytes: not a secret")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"{loc}: {path} is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise SecretError(f"{loc}: {path} is empty")
    return text


def is_secret(model: type[BaseModel], name: str) -> bool:
    info = model.model_fields.get(name)
    extra = info.json_schema_extra if info is not None else None
    return isinstance(extra, dict) and bool(extra.get("secret"))


def secret_kind(model: type[BaseModel], name: str) -> str | None:
    """ "url" (mask only the password in it), "value" (mask it all), or None (not a secret)."""
    info = model.model_fields.get(name)
    extra = info.json_schema_extra if info is not None else None
    kind = extra.get("secret") if isinstance(extra, dict) else None
    return str(kind) if kind else None


def masked(model: BaseModel, dumped: Any) -> Any:
    """`dumped` (model.model_dump(mode="json")) with every secret value replaced by ***."""
    if not isinstance(dumped, dict):
        return dumped
    cls = type(model)
    out = {}
    for name, value in dumped.items():
        kind = secret_kind(cls, name)
        child = getattr(model, name, None)
        if kind and value is not None:
            value = _masked_url(value) if kind == "url" else MASK
        elif isinstance(child, BaseModel):
            value = masked(child, value)
        elif isinstance(child, list) and isinstance(value, list):
            value = [masked(c, v) if isinstance(c, BaseModel) else v for c, v in zip(child, value, strict=True)]
        out[name] = value
    return out


def _masked_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - validated already; never echo it back if it will not parse
        return MASK


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The model class inside `annotation` (Model, Model | None, list[Model]), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, Union, types.UnionType):
        for arg in get_args(annotation):
            sub = _submodel(arg)
            if sub is not None:
                return sub
    return None


def _join(loc: str, key: Any) -> str:
    return f"{loc}.{key}" if loc else str(key)
