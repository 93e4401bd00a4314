"""The transactor's properties file: syntax, defaults, validation, warnings, bundled files.

Expected values are written from the rules (ARCHITECTURE.md §6 and the module's key table),
not copied from output.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import pytest

from fastdatomic.errors import ConfigError
from fastdatomic.storage import forget_mem_storage, open_storage
from fastdatomic.transactor.config import (
    KEYS, TransactorConfig, config_from_text, load_config, parse_properties,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "config" / "samples" / "dev-transactor-template.properties"
DEV_CONFIG = ROOT / "config" / "dev-transactor.properties"

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
BASE = "protocol=dev\nhost=localhost\n"     # lines 1-2; a test's own line is line 3


def cfg(extra: str = "", source: str = "t.properties") -> TransactorConfig:
    return config_from_text(BASE + extra, source)


def config_error(extra: str, source: str = "t.properties") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        cfg(extra, source)
    return info.value


# --- parse_properties: Java .properties syntax ------------------------------------------

def test_separators_equals_colon_and_whitespace():
    assert parse_properties("a=1\nb: 2\nc 3\nd\t4\ne = 5\nf :6") == {
        "a": ("1", 1), "b": ("2", 2), "c": ("3", 3), "d": ("4", 4), "e": ("5", 5), "f": ("6", 6)}


def test_whitespace_around_keys_and_values_is_trimmed():
    assert parse_properties("   key   =   some value   \t\n") == {"key": ("some value", 1)}


def test_only_the_first_separator_splits():
    assert parse_properties("url=a=b:c d") == {"url": ("a=b:c d", 1)}


def test_comments_and_blank_lines():
    text = "# hash comment\n! bang comment\n   # indented comment\n\n   \nkey=value # not a comment\n"
    assert parse_properties(text) == {"key": ("value # not a comment", 6)}


def test_key_without_value_is_empty():
    assert parse_properties("lonely\nalso=") == {"lonely": ("", 1), "also": ("", 2)}


def test_backslash_continuation_joins_lines_and_drops_leading_whitespace():
    text = "path=/var/\\\n      lib/\\\n\tfastdatomic\nnext=1"
    assert parse_properties(text) == {"path": ("/var/lib/fastdatomic", 1), "next": ("1", 4)}


def test_even_backslashes_do_not_continue():
    assert parse_properties("a=x\\\\\nb=y") == {"a": ("x\\", 1), "b": ("y", 2)}


def test_continuation_at_end_of_text():
    assert parse_properties("a=x\\") == {"a": ("x", 1)}


def test_continued_line_starting_with_hash_is_not_a_comment():
    assert parse_properties("a=x\\\n  #y") == {"a": ("x#y", 1)}


def test_comment_line_ending_in_backslash_does_not_continue():
    assert parse_properties("# comment \\\na=1") == {"a": ("1", 2)}


def test_escapes():
    text = r"a=tab\there" + "\n" + r"b=nl\nx" + "\n" + r"c=back\\slash" + "\n" + r"d=\u00e9\u20AC" \
        + "\n" + r"e=\q" + "\n" + r"key\=with\:seps\ sp=v"
    assert parse_properties(text) == {
        "a": ("tab\there", 1), "b": ("nl\nx", 2), "c": ("back\\slash", 3), "d": ("é€", 4),
        "e": ("q", 5), "key=with:seps sp": ("v", 6)}


def test_escaped_trailing_space_is_kept():
    assert parse_properties("a=x\\ \n") == {"a": ("x ", 1)}


def test_malformed_unicode_escape_raises_with_line():
    with pytest.raises(ConfigError, match=r"^f\.properties:2: malformed \\uXXXX"):
        parse_properties("a=1\nb=\\u12G4", "f.properties")


def test_crlf_and_cr_line_endings():
    assert parse_properties("a=1\r\nb=2\rc=3") == {"a": ("1", 1), "b": ("2", 2), "c": ("3", 3)}


def test_duplicate_key_last_wins_and_warns():
    assert parse_properties("port=1\nport=2") == {"port": ("2", 2)}
    c = cfg("port=1111\nport=2222")
    assert c.port == 2222
    assert any("t.properties:4" in w and "port" in w and "line 3" in w for w in c.warnings)


# --- defaults ---------------------------------------------------------------------------

DEFAULTS = {
    "port": 4334,
    "alt_host": None,
    "pid_file": None,
    "heartbeat_interval_msec": 5000,
    "memory_index_threshold": 32 * MiB,
    "memory_index_max": 512 * MiB,
    "object_cache_max": 128 * MiB,
    "max_frame_bytes": 16 * MiB,
    "write_concurrency": 4,
    "read_concurrency": 8,
    "encrypt_channel": True,
    "ping_host": None,
    "ping_port": None,
    "metrics_port": None,
    "sql_url": None,
    "sql_user": None,
    "sql_password": None,
    "group_commit_max": 1000,
    "lmdb_map_size": 1 * GiB,
    "lmdb_map_size_max": 64 * GiB,
}


@pytest.mark.parametrize("field,expected", list(DEFAULTS.items()))
def test_default(field, expected):
    assert getattr(cfg(), field) == expected


def test_default_paths_are_absolute_under_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = cfg()
    assert c.data_dir == str(tmp_path / "data")
    assert c.log_dir == str(tmp_path / "log")


def test_clean_config_has_no_warnings_and_records_its_source():
    c = cfg(source="my.properties")
    assert c.warnings == () and c.source == "my.properties"
    assert (c.protocol, c.host) == ("dev", "localhost")


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg().port = 1


def test_every_field_is_a_key():
    fields = {f.name for f in dataclasses.fields(TransactorConfig)} - {"source", "warnings"}
    assert fields == {k.replace("-", "_") for k in KEYS}


def test_password_stays_out_of_repr():
    c = config_from_text("protocol=sql\nhost=h\nsql-url=postgresql://db/fd\nsql-password=hunter2")
    assert c.sql_password == "hunter2" and "hunter2" not in repr(c)


# --- each value, set ----------------------------------------------------------------------

@pytest.mark.parametrize("line,field,expected", [
    ("alt-host=tx.example.com", "alt_host", "tx.example.com"),
    ("port=0", "port", 0),
    ("port=65535", "port", 65535),
    ("heartbeat-interval-msec=1000", "heartbeat_interval_msec", 1000),
    ("write-concurrency=1", "write_concurrency", 1),
    ("read-concurrency=32", "read_concurrency", 32),
    ("encrypt-channel=false", "encrypt_channel", False),
    ("encrypt-channel=TRUE", "encrypt_channel", True),
    ("metrics-port=9334", "metrics_port", 9334),
    ("group-commit-max=1", "group_commit_max", 1),
    ("max-frame-bytes=64k", "max_frame_bytes", 64 * KiB),
    ("alt-host=", "alt_host", None),                      # empty optional = unset
])
def test_value_is_read(line, field, expected):
    assert getattr(cfg(line), field) == expected


@pytest.mark.parametrize("text,expected", [
    ("4096", 4096), ("1k", KiB), ("1K", KiB), ("32m", 32 * MiB), ("32M", 32 * MiB),
    ("2g", 2 * GiB), ("2G", 2 * GiB),
])
def test_sizes_take_k_m_g_suffixes(text, expected):
    c = cfg(f"object-cache-max={text}")
    assert c.object_cache_max == expected


def test_ping_host_defaults_to_host_when_ping_port_is_set():
    c = config_from_text("protocol=dev\nhost=tx1.internal\nping-port=9999")
    assert (c.ping_host, c.ping_port) == ("tx1.internal", 9999)
    assert cfg("ping-host=0.0.0.0\nping-port=9999").ping_host == "0.0.0.0"


def test_ping_host_without_ping_port_warns():
    c = cfg("ping-host=localhost")
    assert c.ping_port is None and c.ping_host is None
    assert any("t.properties:3" in w and "ping-host" in w for w in c.warnings)


def test_mem_protocol_is_accepted():
    assert config_from_text("protocol=mem\nhost=localhost\nport=0").protocol == "mem"


def test_sql_protocol_with_sql_url():
    c = config_from_text("protocol=sql\nhost=h\nsql-url=postgresql://db:5432/fd\nsql-user=u")
    assert (c.protocol, c.sql_url, c.sql_user) == ("sql", "postgresql://db:5432/fd", "u")


def test_sql_keys_warn_when_protocol_is_not_sql():
    c = cfg("sql-url=postgresql://db/fd")
    assert c.sql_url == "postgresql://db/fd"
    assert any("t.properties:3" in w and "sql-url" in w for w in c.warnings)


# --- paths ----------------------------------------------------------------------------------

def test_relative_paths_resolve_against_the_current_directory_at_load(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "tx.properties").write_text(BASE + "data-dir=d/store\nlog-dir=../logs\npid-file=tx.pid\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    c = load_config(conf / "tx.properties")
    # against the cwd, not the file's directory
    assert c.data_dir == os.path.join(str(work), "d", "store")
    assert c.log_dir == str(tmp_path / "logs")
    assert c.pid_file == str(work / "tx.pid")


def test_absolute_paths_stay(tmp_path):
    assert cfg(f"data-dir={tmp_path}/x").data_dir == str(tmp_path / "x")


# --- invalid values: ConfigError names key, value, file and line ----------------------------

@pytest.mark.parametrize("line", [
    "protocol=ddb",
    "host=",
    "host=two words",
    "port=-1",
    "port=65536",
    "port=43x4",
    "alt-host=a b",
    "data-dir=",
    "heartbeat-interval-msec=fast",
    "heartbeat-interval-msec=5000.0",
    "memory-index-threshold=32x",
    "memory-index-threshold=1.5g",
    "memory-index-threshold=0",
    "memory-index-max=-1m",
    "object-cache-max=m",
    "max-frame-bytes=65535",
    "max-frame-bytes=32kb",
    "write-concurrency=0",
    "read-concurrency=0",
    "read-concurrency=two",
    "encrypt-channel=yes",
    "encrypt-channel=1",
    "ping-port=99999",
    "metrics-port=http",
    "group-commit-max=0",
    "lmdb-map-size=32k",
    "lmdb-map-size-max=10",
])
def test_invalid_value_names_key_value_file_and_line(line):
    key, value = line.split("=", 1)
    if key == "protocol":
        text = f"{line}\nhost=localhost\n"
    elif key == "host":
        text = f"protocol=dev\n{line}\n"
    else:
        text = BASE + line + "\n"
    with pytest.raises(ConfigError) as info:
        config_from_text(text, "bad.properties")
    e = info.value
    line_no = text.split("\n").index(line) + 1
    assert str(e).startswith(f"bad.properties:{line_no}: {key}={value} ")
    assert "accepted" in str(e)
    assert (e.data["key"], e.data["value"], e.data["line"]) == (key, value, line_no)
    assert e.kind == "config/invalid"


def test_heartbeat_999_is_rejected_with_the_minimum_and_why():
    e = config_error("heartbeat-interval-msec=999")
    msg = str(e)
    assert msg.startswith("t.properties:3: heartbeat-interval-msec=999 is below the minimum 1000")
    assert "§4.4" in msg and "heartbeat" in msg


def test_heartbeat_1000_is_accepted():
    assert cfg("heartbeat-interval-msec=1000").heartbeat_interval_msec == 1000


@pytest.mark.parametrize("lines,line_no", [
    ("memory-index-threshold=64m\nmemory-index-max=64m", 4),        # equal
    ("memory-index-threshold=128m\nmemory-index-max=64m", 4),       # larger
    ("memory-index-max=32m", 3),                                    # equal to the default
    ("memory-index-threshold=1g", 3),                               # above the default max
])
def test_threshold_must_be_below_max(lines, line_no):
    e = config_error(lines)
    assert str(e).startswith(f"t.properties:{line_no}: ")
    assert "memory-index-threshold" in str(e) and "memory-index-max" in str(e)
    assert e.data["line"] == line_no


def test_threshold_just_below_max_is_accepted():
    c = cfg("memory-index-threshold=64m\nmemory-index-max=65m")
    assert (c.memory_index_threshold, c.memory_index_max) == (64 * MiB, 65 * MiB)


def test_lmdb_map_size_max_must_be_at_least_map_size():
    e = config_error("lmdb-map-size=2g\nlmdb-map-size-max=1g")
    assert "lmdb-map-size-max" in str(e) and "lmdb-map-size=" in str(e)
    c = cfg("lmdb-map-size=1g\nlmdb-map-size-max=1g")
    assert c.lmdb_map_size == c.lmdb_map_size_max == GiB


def test_sql_without_sql_url_names_sql_url():
    with pytest.raises(ConfigError, match="sql-url"):
        config_from_text("protocol=sql\nhost=localhost")


@pytest.mark.parametrize("text,key", [("host=localhost", "protocol"), ("protocol=dev", "host")])
def test_required_key_missing(text, key):
    with pytest.raises(ConfigError, match=f"^x.properties: required key {key} is missing"):
        config_from_text(text, "x.properties")


@pytest.mark.parametrize("lines", ["ping-port=4334", "metrics-port=4334",
                                   "ping-port=9000\nmetrics-port=9000"])
def test_two_listeners_on_one_port_are_rejected(lines):
    e = config_error(lines)
    assert "same port" in str(e)


def test_port_zero_never_clashes():
    c = cfg("port=0\nping-port=0\nmetrics-port=0")
    assert (c.port, c.ping_port, c.metrics_port) == (0, 0, 0)


def test_ping_on_another_host_may_share_the_port_number():
    assert cfg("ping-host=10.0.0.2\nping-port=4334").ping_port == 4334


# --- unknown keys ------------------------------------------------------------------------------

def test_unknown_key_warns_with_file_and_line():
    c = cfg("license-key=ABC\nmemcached=m1:11211", "tx.properties")
    assert c.warnings == ("tx.properties:3: unknown key 'license-key' ignored",
                          "tx.properties:4: unknown key 'memcached' ignored")


def test_misspelt_key_suggests_the_real_one():
    (w,) = cfg("heartbeat-interval-ms=2000").warnings
    assert w.startswith("t.properties:3: unknown key 'heartbeat-interval-ms'")
    assert "did you mean heartbeat-interval-msec?" in w


# --- files ---------------------------------------------------------------------------------------

def test_load_config_reads_a_file(tmp_path):
    p = tmp_path / "tx.properties"
    p.write_text(BASE + "port=4400\n")
    c = load_config(p)
    assert (c.port, c.source) == (4400, str(p))
    assert load_config(str(p)).port == 4400


def test_load_config_errors_name_the_file(tmp_path):
    p = tmp_path / "tx.properties"
    p.write_text(BASE + "port=http\n")
    with pytest.raises(ConfigError, match=f"^{p}:3: port=http"):
        load_config(p)


def test_missing_file_raises_config_error_with_path(tmp_path):
    p = tmp_path / "nope.properties"
    with pytest.raises(ConfigError, match=str(p)):
        load_config(p)


def test_directory_raises_config_error_with_path(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path)):
        load_config(tmp_path)


def test_utf8_bom_and_latin1_files(tmp_path):
    p = tmp_path / "bom.properties"
    p.write_bytes(b"\xef\xbb\xbf" + BASE.encode() + "alt-host=caf\u00e9\n".encode())
    c = load_config(p)
    assert c.warnings == () and c.alt_host == "caf\u00e9"
    p.write_bytes(BASE.encode() + b"alt-host=caf\xe9\n")
    assert load_config(p).alt_host == "caf\u00e9"


# --- storage options ------------------------------------------------------------------------------

def test_dev_storage_options_open_lmdb(tmp_path):
    c = cfg(f"data-dir={tmp_path}/db\nlmdb-map-size=1m\nlmdb-map-size-max=8m")
    protocol, options = c.storage_options()
    assert (protocol, options) == ("dev", {"path": str(tmp_path / "db"), "map_size": MiB,
                                           "map_size_max": 8 * MiB})
    with open_storage(protocol, **options) as st:
        assert st.describe()["backend"] == "lmdb"


def test_mem_storage_options_name_one_store_per_data_dir(tmp_path):
    a = config_from_text(f"protocol=mem\nhost=h\ndata-dir={tmp_path}/a").storage_options()
    b = config_from_text(f"protocol=mem\nhost=h\ndata-dir={tmp_path}/b").storage_options()
    assert a[0] == b[0] == "mem" and a[1]["name"] != b[1]["name"]
    open_storage(a[0], **a[1]).close()
    forget_mem_storage(a[1]["name"])


def test_sql_storage_options_carry_the_connection_settings():
    c = config_from_text("protocol=sql\nhost=h\nsql-url=postgresql://db/fd\nsql-user=u\nsql-password=p")
    assert c.storage_options() == ("sql", {"url": "postgresql://db/fd", "user": "u", "password": "p"})


# --- the bundled files --------------------------------------------------------------------------

def test_bundled_dev_config_validates():
    c = load_config(DEV_CONFIG)
    assert c.warnings == ()
    assert (c.protocol, c.host, c.port) == ("dev", "localhost", 4334)
    assert c.heartbeat_interval_msec == 1000 and c.encrypt_channel is True
    assert (c.ping_host, c.ping_port) == ("localhost", 9999)
    assert c.metrics_port not in (None, 4334, 9999)
    assert c.data_dir == os.path.abspath("data") and c.log_dir == os.path.abspath("log")


def test_template_validates():
    c = load_config(TEMPLATE)
    assert c.warnings == ()
    assert (c.protocol, c.host, c.port) == ("dev", "localhost", 4334)


def _template_values():
    """``{key: value}`` of the template's commented-out ``# key=value`` lines and set keys."""
    out = {k: v for k, (v, _) in parse_properties(TEMPLATE.read_text()).items()}
    for line in TEMPLATE.read_text().splitlines():
        body = line[1:].strip() if line.startswith("#") else ""
        key, sep, value = body.partition("=")
        if sep and key in KEYS:
            out[key] = value
    return out


def test_template_documents_every_key():
    assert set(_template_values()) == set(KEYS)


@pytest.mark.parametrize("key", [k for k in KEYS if k.replace("-", "_") in DEFAULTS
                                 and DEFAULTS[k.replace("-", "_")] is not None])
def test_template_shows_the_real_default(key):
    value = _template_values()[key]
    field = key.replace("-", "_")
    assert getattr(cfg(f"{key}={value}"), field) == DEFAULTS[field]


def test_template_shows_the_real_default_paths():
    comments = _template_values()
    assert (comments["data-dir"], comments["log-dir"]) == ("data", "log")
