"""The transactor's properties file: parse it, check every value, build one frozen config.

Transactor layer, imported only by the transactor process and ``cli``; it needs nothing of
fastdatomic but :mod:`fastdatomic.errors`. Key names are Datomic's (ARCHITECTURE.md §6), so an
operator's ``transactor.properties`` habits carry over; our own additions are
``max-frame-bytes``, ``auth-timeout-msec``, ``peer-backlog-max``, ``group-commit-max``,
``lmdb-map-size`` and ``lmdb-map-size-max``.

Unknown keys warn (Datomic keys we do not implement, such as ``license-key``, land there too);
an invalid value stops startup with a :class:`~fastdatomic.errors.ConfigError` that names the
key, the value, the file and line, and what is accepted.

>>> cfg = config_from_text("protocol=dev\\nhost=localhost\\nmemory-index-max=1g\\nfoo=1", "t.properties")
>>> cfg.port, cfg.memory_index_max == 1 << 30, cfg.heartbeat_interval_msec
(4334, True, 5000)
>>> cfg.warnings
("t.properties:4: unknown key 'foo' ignored",)
"""

from __future__ import annotations

import dataclasses
import os
import re

from fastdatomic.errors import ConfigError

__all__ = ["TransactorConfig", "parse_properties", "load_config", "config_from_text", "KEYS",
           "MIN_HEARTBEAT_MSEC"]

#: ARCHITECTURE §4.4: the standby takes over after two missed heartbeats, judged on its own
#: clock; below a second, a GC or scheduling pause of the active would look like a death.
MIN_HEARTBEAT_MSEC = 1000
_HEARTBEAT_WHY = ("ARCHITECTURE §4.4: a standby takes over after two missed heartbeats, so a "
                  "shorter interval turns ordinary pauses into needless failovers")

_PROTOCOLS = ("dev", "sql", "mem")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_SIZE_RE = re.compile(r"([0-9]+)([kmg]?)", re.IGNORECASE)
_INT_RE = re.compile(r"[+-]?[0-9]+")


# --- the properties syntax -------------------------------------------------------

_WHITESPACE = " \t\f"
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _natural_lines(text: str):
    """``(line_number, line)`` with ``\\n``, ``\\r\\n`` and ``\\r`` all ending a line."""
    for number, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        yield number, line


def _continues(line: str) -> bool:
    """A line continues onto the next when it ends in an odd number of backslashes."""
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _logical_lines(text: str):
    """``(first_line_number, raw_text)`` of each key/value line, comments and blanks dropped.

    A continued line loses its trailing backslash and the next line its leading whitespace,
    as in ``java.util.Properties``; a comment line never continues.
    """
    lines = _natural_lines(text)
    for number, line in lines:
        stripped = line.lstrip(_WHITESPACE)
        if not stripped or stripped[0] in "#!":
            continue
        parts = [stripped]
        while _continues(parts[-1]):
            parts[-1] = parts[-1][:-1]
            nxt = next(lines, None)
            if nxt is None:
                break
            parts.append(nxt[1].lstrip(_WHITESPACE))
        yield number, "".join(parts)


def _split(raw: str, source: str, line: int) -> tuple[str, str]:
    """Unescape one logical line into ``(key, value)``, both trimmed of unescaped whitespace.

    The key ends at the first unescaped ``=``, ``:`` or whitespace; whitespace, at most one
    ``=`` or ``:``, and whitespace again separate it from the value.
    """
    key: list[str] = []
    value: list[str] = []
    out = key
    keep = 0              # length of `value` up to its last char that is not bare whitespace
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == "\\" and i + 1 < n:
            c, i = _unescape(raw, i, source, line)
            out.append(c)
            keep = len(value)
        elif out is key and (c in "=:" or c in _WHITESPACE):
            while i < n and raw[i] in _WHITESPACE:
                i += 1
            if i < n and raw[i] in "=:" and c not in "=:":
                i += 1                    # `key = value`: the separator after the spaces
            elif c in "=:":
                i += 1
            while i < n and raw[i] in _WHITESPACE:
                i += 1
            out = value
        else:
            out.append(c)
            if out is value and c not in _WHITESPACE:
                keep = len(value)
            i += 1
    return "".join(key), "".join(value[:keep])


def _unescape(raw: str, i: int, source: str, line: int) -> tuple[str, int]:
    """The character escaped at ``raw[i] == '\\\\'`` and the index after the escape."""
    c = raw[i + 1]
    if c != "u":
        return _ESCAPES.get(c, c), i + 2      # Java drops the backslash of an unknown escape
    digits = raw[i + 2:i + 6]
    if len(digits) != 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
        raise ConfigError(f"{source}:{line}: malformed \\uXXXX escape {raw[i:i + 6]!r} "
                          "(a backslash-u needs exactly four hex digits)",
                          data={"source": source, "line": line})
    return chr(int(digits, 16)), i + 6


def _parse(text: str, source: str) -> tuple[dict[str, tuple[str, int]], list[tuple[int, str]]]:
    """The properties and ``(line, warning)`` pairs for keys given twice."""
    props: dict[str, tuple[str, int]] = {}
    warnings: list[tuple[int, str]] = []
    for number, raw in _logical_lines(text):
        key, value = _split(raw, source, number)
        if key in props:
            warnings.append((number, f"{source}:{number}: key {key!r} given again (earlier at line "
                            f"{props[key][1]}); the last value wins"))
        props[key] = (value, number)
    return props, warnings


def parse_properties(text: str, source: str = "<string>") -> dict[str, tuple[str, int]]:
    r"""Read Java ``.properties`` text into ``{key: (value, line_number)}``.

    Comments start with ``#`` or ``!``; ``key=value``, ``key: value`` and ``key value`` all
    work; whitespace around keys and values is dropped; a trailing backslash continues a
    line; ``\t \n \\ \uXXXX`` escapes are read. The line number is the one the key is on.
    A key given twice keeps its last value (:func:`config_from_text` warns about it).

    >>> parse_properties("# comment\n! also one\nhost = localhost\nport: 4334\nport 4335")
    {'host': ('localhost', 3), 'port': ('4335', 5)}
    >>> parse_properties("data-dir = /var/lib/\\\n    fastdatomic\nsep=a\\tb\\u00e9")
    {'data-dir': ('/var/lib/fastdatomic', 1), 'sep': ('a\tbé', 3)}
    """
    return _parse(text, source)[0]


# --- values --------------------------------------------------------------------------

class _Prop:
    """One key being read: its raw value, where it came from, and how to complain about it."""

    __slots__ = ("key", "value", "line", "source")

    def __init__(self, key: str, value: str, line: int | None, source: str):
        self.key, self.value, self.line, self.source = key, value, line, source

    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line is not None else self.source

    def error(self, problem: str, accepted: str | None = None, hint: str | None = None):
        msg = f"{self.where()}: {self.key}={self.value} {problem}"
        if accepted:
            msg += f"; accepted: {accepted}"
        return ConfigError(msg, hint=hint, data={"key": self.key, "value": self.value,
                                                 "source": self.source, "line": self.line})


def _size_text(n: int) -> str:
    for suffix, unit in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def _read_int(p: _Prop, minimum: int, maximum: int | None = None, what: str = "an integer") -> int:
    accepted = f"{what} from {minimum}" + (f" to {maximum}" if maximum is not None else " up")
    if not _INT_RE.fullmatch(p.value):
        raise p.error("is not an integer", accepted)
    n = int(p.value)
    if n < minimum:
        raise p.error(f"is below the minimum {minimum}", accepted)
    if maximum is not None and n > maximum:
        raise p.error(f"is above the maximum {maximum}", accepted)
    return n


def _read_port(p: _Prop) -> int:
    return _read_int(p, 0, 65535, "a TCP port (0 = any free port)")


def _read_size(p: _Prop, minimum: int) -> int:
    accepted = (f"bytes, or a number with a k, m or g suffix (1k = 1024), "
                f"at least {_size_text(minimum)}")
    m = _SIZE_RE.fullmatch(p.value)
    if m is None:
        raise p.error("is not a size", accepted)
    n = int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if n < minimum:
        raise p.error(f"is below the minimum {_size_text(minimum)}", accepted)
    return n


def _read_bool(p: _Prop) -> bool:
    v = p.value.lower()
    if v not in ("true", "false"):
        raise p.error("is not a boolean", "true or false")
    return v == "true"


def _read_name(p: _Prop) -> str:
    """A host name: non-empty, no whitespace."""
    if not p.value or any(c.isspace() for c in p.value):
        raise p.error("is not a host name", "a host name or IP address, without spaces")
    return p.value


def _read_str(p: _Prop) -> str:
    return p.value


def _read_path(p: _Prop) -> str:
    if not p.value:
        raise p.error("is empty", "a directory or file path (relative ones are resolved "
                                  "against the current directory)")
    return os.path.abspath(p.value)


def _read_protocol(p: _Prop) -> str:
    if p.value not in _PROTOCOLS:
        raise p.error("is not a storage protocol",
                      "dev (LMDB under data-dir), sql (PostgreSQL, needs sql-url), "
                      "mem (in-process, tests only)")
    return p.value


def _read_heartbeat(p: _Prop) -> int:
    accepted = f"an integer number of milliseconds, at least {MIN_HEARTBEAT_MSEC}"
    if not _INT_RE.fullmatch(p.value):
        raise p.error("is not an integer", accepted)
    n = int(p.value)
    if n < MIN_HEARTBEAT_MSEC:
        raise p.error(f"is below the minimum {MIN_HEARTBEAT_MSEC} ms ({_HEARTBEAT_WHY})", accepted)
    return n


# key -> (field name, reader, default as the properties file would spell it, None = unset).
# The defaults are Datomic's where the key is Datomic's.
_SPEC = {
    "protocol":                ("protocol", _read_protocol, None),
    "host":                    ("host", _read_name, None),
    "alt-host":                ("alt_host", _read_name, None),
    "port":                    ("port", _read_port, "4334"),
    "data-dir":                ("data_dir", _read_path, "data"),
    "log-dir":                 ("log_dir", _read_path, "log"),
    "pid-file":                ("pid_file", _read_path, None),
    "heartbeat-interval-msec": ("heartbeat_interval_msec", _read_heartbeat, "5000"),
    "memory-index-threshold":  ("memory_index_threshold", lambda p: _read_size(p, 1), "32m"),
    "memory-index-max":        ("memory_index_max", lambda p: _read_size(p, 1), "512m"),
    "object-cache-max":        ("object_cache_max", lambda p: _read_size(p, 1), "128m"),
    "max-frame-bytes":         ("max_frame_bytes", lambda p: _read_size(p, 64 << 10), "16m"),
    "auth-timeout-msec":       ("auth_timeout_msec",
                                lambda p: _read_int(p, 100, 3_600_000, "milliseconds"), "10000"),
    "peer-backlog-max":        ("peer_backlog_max", lambda p: _read_size(p, 64 << 10), "64m"),
    "write-concurrency":       ("write_concurrency", lambda p: _read_int(p, 1), "4"),
    "read-concurrency":        ("read_concurrency", lambda p: _read_int(p, 1), "8"),
    "encrypt-channel":         ("encrypt_channel", _read_bool, "true"),
    "ping-host":               ("ping_host", _read_name, None),
    "ping-port":               ("ping_port", _read_port, None),
    "metrics-port":            ("metrics_port", _read_port, None),
    "sql-url":                 ("sql_url", _read_str, None),
    "sql-user":                ("sql_user", _read_str, None),
    "sql-password":            ("sql_password", _read_str, None),
    "group-commit-max":        ("group_commit_max", lambda p: _read_int(p, 1), "1000"),
    "lmdb-map-size":           ("lmdb_map_size", lambda p: _read_size(p, 64 << 10), "1g"),
    "lmdb-map-size-max":       ("lmdb_map_size_max", lambda p: _read_size(p, 64 << 10), "64g"),
}

#: Every key the transactor reads, in the order the template documents them.
KEYS = tuple(_SPEC)


# --- the config ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TransactorConfig:
    """A checked transactor configuration; build it with :func:`load_config` or
    :func:`config_from_text`. Sizes are in bytes, paths absolute, ``None`` means unset.

    >>> cfg = config_from_text("protocol=dev\\nhost=tx1\\nping-port=9999")
    >>> cfg.host, cfg.ping_host, cfg.ping_port, cfg.metrics_port, cfg.encrypt_channel
    ('tx1', 'tx1', 9999, None, True)
    >>> cfg.memory_index_threshold == 32 * 1024 * 1024
    True
    """

    protocol: str
    host: str
    alt_host: str | None
    port: int
    data_dir: str
    log_dir: str
    pid_file: str | None
    heartbeat_interval_msec: int
    memory_index_threshold: int
    memory_index_max: int
    object_cache_max: int
    max_frame_bytes: int
    auth_timeout_msec: int
    peer_backlog_max: int
    write_concurrency: int
    read_concurrency: int
    encrypt_channel: bool
    ping_host: str | None
    ping_port: int | None
    metrics_port: int | None
    sql_url: str | None
    sql_user: str | None
    sql_password: str | None = dataclasses.field(repr=False)   # repr() ends up in logs
    group_commit_max: int
    lmdb_map_size: int
    lmdb_map_size_max: int
    source: str = "<string>"
    warnings: tuple[str, ...] = ()

    def storage_options(self) -> tuple[str, dict]:
        """``(protocol, options)`` for :func:`fastdatomic.storage.open_storage`.

        ``dev`` opens LMDB in ``data-dir``; ``mem`` names the in-process store after
        ``data-dir``, so configs that share a data-dir share a store within a process;
        ``sql`` passes the connection settings.

        >>> import os
        >>> cfg = config_from_text("protocol=dev\\nhost=localhost\\ndata-dir=/srv/fd\\nlmdb-map-size=64m")
        >>> cfg.storage_options() == ("dev", {"path": os.path.abspath("/srv/fd"),
        ...     "map_size": 64 << 20, "map_size_max": 64 << 30})
        True
        >>> config_from_text("protocol=mem\\nhost=localhost\\ndata-dir=/x").storage_options()[1]["name"]
        'transactor:/x'
        """
        if self.protocol == "dev":
            return "dev", {"path": self.data_dir, "map_size": self.lmdb_map_size,
                           "map_size_max": self.lmdb_map_size_max}
        if self.protocol == "mem":
            return "mem", {"name": f"transactor:{self.data_dir}"}
        return "sql", {"url": self.sql_url, "user": self.sql_user, "password": self.sql_password}


def config_from_text(text: str, source: str = "<string>") -> TransactorConfig:
    """Parse and check properties text; ``source`` names it in messages and warnings.

    >>> config_from_text("protocol=dev\\nhost=localhost\\nheartbeat-interval-msec=500", "tx.properties")
    Traceback (most recent call last):
    ...
    fastdatomic.errors.ConfigError: tx.properties:3: heartbeat-interval-msec=500 is below the minimum 1000 ms ...
    >>> config_from_text("protocol=dev\\nhost=localhost").data_dir == os.path.abspath("data")
    True
    """
    props, warnings = _parse(text, source)
    for key, (_, line) in props.items():
        if key not in _SPEC:
            warnings.append((line, f"{source}:{line}: unknown key {key!r} ignored"
                                   f"{_did_you_mean(key)}"))

    values: dict[str, object] = {}
    for key, (field, reader, default) in _SPEC.items():
        if key in props:
            value, line = props[key]
            if value == "" and default is None and key not in ("protocol", "host"):
                values[field] = None          # `alt-host=` in a template means unset
                continue
            values[field] = reader(_Prop(key, value, line, source))
        elif default is not None:
            values[field] = reader(_Prop(key, default, None, f"{source} (default)"))
        elif key in ("protocol", "host"):
            accepted = "dev, sql or mem" if key == "protocol" else "the host name peers reach"
            raise ConfigError(f"{source}: required key {key} is missing (accepted: {accepted})",
                              data={"key": key, "source": source, "line": None})
        else:
            values[field] = None

    _check_together(values, props, source, warnings)
    warnings.sort(key=lambda w: w[0])            # in file order, as an operator reads them
    return TransactorConfig(**values, source=source, warnings=tuple(w for _, w in warnings))


def _did_you_mean(key: str) -> str:
    import difflib                     # only on the rare unknown-key path
    close = difflib.get_close_matches(key, KEYS, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _check_together(values: dict, props: dict, source: str, warnings: list) -> None:
    """The rules that tie several keys together (``values`` by field name, filled in place;
    ``warnings`` gets ``(line, message)`` pairs)."""
    def where(key):
        return f"{source}:{props[key][1]}" if key in props else "the default"

    def error(msg, key, other):
        return ConfigError(msg, data={"key": key, "keys": [key, other], "source": source,
                                      "line": props[key][1] if key in props else None})

    protocol = values["protocol"]
    if protocol == "sql" and not values["sql_url"]:
        raise error(f"{where('protocol')}: protocol=sql needs sql-url (the PostgreSQL "
                    "connection URL, e.g. postgresql://db-host:5432/fastdatomic)", "sql-url", "protocol")
    if protocol != "sql":
        for key in ("sql-url", "sql-user", "sql-password"):
            if key in props and props[key][0]:
                warnings.append((props[key][1], f"{where(key)}: {key} is ignored with "
                                                 f"protocol={protocol}"))

    # (smaller key, larger key, whether they may be equal)
    for lo_key, hi_key, may_equal in (("memory-index-threshold", "memory-index-max", False),
                                      ("lmdb-map-size", "lmdb-map-size-max", True)):
        lo, hi = values[_SPEC[lo_key][0]], values[_SPEC[hi_key][0]]
        if lo > hi or (lo == hi and not may_equal):
            lo_text, hi_text = f"{lo_key}={_size_text(lo)}", f"{hi_key}={_size_text(hi)}"
            if hi_key in props:
                relation = "must be at least" if may_equal else "must be larger than"
                raise error(f"{where(hi_key)}: {hi_text} {relation} {lo_text} ({where(lo_key)})",
                            hi_key, lo_key)
            relation = "must be at most" if may_equal else "must be smaller than"
            raise error(f"{where(lo_key)}: {lo_text} {relation} {hi_text} ({where(hi_key)})",
                        lo_key, hi_key)

    if values["ping_port"] is not None and values["ping_host"] is None:
        values["ping_host"] = values["host"]
    elif values["ping_port"] is None and values["ping_host"] is not None:
        values["ping_host"] = None
        warnings.append((props["ping-host"][1], f"{where('ping-host')}: ping-host is ignored "
                                                "without ping-port (no /health endpoint)"))

    # Two listeners on one port would fail at bind time with a vaguer message; 0 never clashes.
    listeners = [("port", values["port"], values["host"]),
                 ("ping-port", values["ping_port"], values["ping_host"]),
                 ("metrics-port", values["metrics_port"], None)]        # metrics: every interface
    for i, (k1, p1, h1) in enumerate(listeners):
        for k2, p2, h2 in listeners[i + 1:]:
            if p1 and p1 == p2 and (h1 is None or h2 is None or h1 == h2):
                key, other = (k2, k1) if k2 in props else (k1, k2)
                raise error(f"{where(key)}: {k2}={p2} is the same port as {k1} ({where(k1)}); "
                            "each listener needs its own port (0 = any free port)", key, other)


def load_config(path) -> TransactorConfig:
    """Read and check the properties file at ``path`` (UTF-8; ISO-8859-1 if it is not UTF-8).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "tx.properties"
    >>> _ = p.write_text("protocol=dev\\nhost=localhost\\nport=0\\n")
    >>> load_config(p).port
    0
    >>> load_config(p.parent / "missing.properties")
    Traceback (most recent call last):
    ...
    fastdatomic.errors.ConfigError: cannot read transactor properties file .../missing.properties: ...
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read transactor properties file {source}: {e.strerror or e}",
                          data={"source": source}) from e
    try:
        text = data.decode("utf-8-sig")       # an editor's BOM is not part of the first key
    except UnicodeDecodeError:
        text = data.decode("latin-1")          # java.util.Properties' own encoding
    return config_from_text(text, source)
