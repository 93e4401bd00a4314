"""EDN reader and printer: transaction data and Datalog queries as text.

>>> loads('[:find ?e :where [?e :person/name "Ann"]]')
[Keyword('find'), Symbol('?e'), Keyword('where'), [Symbol('?e'), Keyword('person/name'), 'Ann']]
>>> dumps({Keyword("person/name"): "Ann", Keyword("person/age"): 31})
'{:person/name "Ann" :person/age 31}'

How EDN maps onto Python (``loads(dumps(x)) == x`` for every value below):

============================  =================================================
EDN                           Python
============================  =================================================
``nil`` ``true`` ``false``    ``None`` ``True`` ``False``
``42`` ``-7`` ``42N``         ``int`` (``N`` only says "big"; Clojure's ``0x1F``,
                              octal ``017`` and radix ``2r101`` read too)
``1/3``                       ``fractions.Fraction`` (``4/2`` reads as ``2``)
``1.5`` ``1e3`` ``##NaN``     ``float`` (also ``##Inf``, ``##-Inf``)
``1.5M``                      ``decimal.Decimal``
``"text"``                    ``str`` (escapes ``\\t \\n \\r \\b \\f \\" \\\\ \\uXXXX``
                              and octal ``\\NNN``; ``\\uD83D\\uDE00`` pairs join)
``\\a`` ``\\newline``           ``str`` of length 1 (printed back as a string)
``:ns/name``                  ``Keyword`` (interned)
``?e`` ``ns/fn`` ``...``       ``Symbol`` (interned)
``[a b]``                     ``list``
``(f a)``                     ``Form``: a ``tuple`` subclass, so Datalog can tell
                              ``(pull ?e [*])`` from the pattern ``[?e :a ?v]``
``{k v}``                     ``dict`` (an unhashable key is frozen: a vector or
                              list key becomes a ``tuple``/``Form``, a map key a
                              ``frozenset`` of ``(key, value)`` tuples)
``#{a b}``                    ``frozenset`` (elements frozen the same way)
``#inst "..."``               aware ``datetime`` (RFC 3339; UTC when no offset;
                              nanoseconds truncated to microseconds)
``#uuid "..."``               ``uuid.UUID``
``#uri "..."``                ``fastdatomic.types.URI``
``#:ns{:a 1}``                ``{:ns/a 1}`` (Clojure's namespaced map syntax)
``#"^A.*"``                   compiled ``re.Pattern`` (Clojure's regex literal, read
                              as Clojure does: the text between the quotes is the
                              regex verbatim, ``\\"`` puts a quote in; Python's
                              ``re`` compiles it, so ``loads(dumps(p)) == p`` except
                              that a bare ``"`` in ``p`` comes back as ``\\"``)
============================  =================================================

``#_`` discards the next form, ``;`` starts a comment, commas are whitespace (so is
anything ``str.isspace`` accepts). Metadata (``^``), quoting, reader conditionals and
other Clojure-only syntax raise ``EdnSyntaxError``, as do unknown tags unless
``tags=`` maps them to a function. Every syntax error says what was found where:
line and column (1-based) and an excerpt with a caret.

Speed: a fast path splits strings, comments and character literals out with one
C-level regex split, pads the brackets and lets ``str.split`` cut the rest, then
builds values in one flat loop with a cache of keyword/symbol tokens; anything
unusual (``#_``, tagged collections, user tags, errors) is handed to the careful,
position-tracking reader, which is the reference and reports every error.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from itertools import chain
from json.decoder import scanstring as _json_scanstring
from json.encoder import encode_basestring as _encode_str

from fastdatomic.errors import EdnSyntaxError
from fastdatomic.types import URI, Keyword, Symbol

__all__ = ["loads", "read_all", "dumps", "Form", "EdnSyntaxError", "MAX_DEPTH", "compile_regex"]

#: Deepest nesting of collections (and tags) that ``loads`` and ``dumps`` accept.
MAX_DEPTH = 2000


class Form(tuple):
    """An EDN list ``( ... )``: a tuple that remembers it was written with parentheses.

    It equals and hashes like a plain tuple of the same items; ``type(x) is Form`` tells
    a call such as ``(pull ?e [*])`` from a vector. Slicing gives a plain tuple.

    >>> f = loads("(pull ?e [*])")
    >>> f
    Form((Symbol('pull'), Symbol('?e'), [Symbol('*')]))
    >>> f == (Symbol("pull"), Symbol("?e"), [Symbol("*")]), isinstance(f, tuple)
    (True, True)
    >>> dumps(Form((Symbol(">"), Symbol("?age"), 30)))
    '(> ?age 30)'
    """

    __slots__ = ()

    def __repr__(self):
        return f"Form({tuple.__repr__(self)})"


# ----------------------------------------------------------------------------
# Lexical grammar (shared by both paths so they cut tokens the same way)
# ----------------------------------------------------------------------------

# Characters that end a token (Clojure's whitespace and terminating macro characters).
_TERM = r"""\s,";@^`~()\[\]{}\\"""
_CONSTITUENT = f"[^{_TERM}]"
_STRING = r'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_CHAR = rf"\\\S{_CONSTITUENT}*+"
_COMMENT = r";[^\n\r]*+"

# Careful reader: one token per match, whitespace and comments skipped in front.
# Every position is covered: `bad` takes any single character, `end` the end of input.
_TOKEN_RE = re.compile(
    rf"(?:[\s,]++|{_COMMENT})*+(?:"
    rf"(?P<atom>[^{_TERM}#']{_CONSTITUENT}*+)"
    rf'|"(?P<str>[^"\\]*+(?:\\.[^"\\]*+)*+)"'
    r"|(?P<open>[\[({]|#\{)"
    r"|(?P<close>[\])}])"
    r"|(?P<discard>#_)"
    rf"|(?P<char>{_CHAR})"
    r'|#"(?P<regex>[^"\\]*+(?:\\.[^"\\]*+)*+)"'
    rf"|(?P<disp>#{_CONSTITUENT}*+)"
    r"|(?P<end>\Z)"
    r"|(?P<bad>.))",
    re.S,
)

# Fast path: split out plain strings (group 1), escaped strings and characters (group 2) and
# comments (neither group); what is left between them is code for str.split().
_SPLIT_RE = re.compile(rf'"([^"\\]*+)"|({_STRING}|{_CHAR})|{_COMMENT}', re.S)
_HASH_GLUED_RE = re.compile(r"#(?<=[^\s\[\](){}#]#)")  # a '#' inside a token: literal first, for speed

_SYM_CHARS = r"[\w.*+!\-?$%&=<>:#']"
_SYM_PART = rf"(?:[+\-.](?!\d)|[^\W\d]|[*!?$%&=<>]){_SYM_CHARS}*"
_KW_PART = rf"[\w.*+!\-?$%&=<>]{_SYM_CHARS}*"
_SYMBOL_RE = re.compile(rf"(?!.*::)(?!.*:$)(?:/|{_SYM_PART}(?:/{_SYM_PART}|//)?)")
_KEYWORD_RE = re.compile(rf"(?!.*::)(?!.*:$):{_KW_PART}(?:/{_KW_PART})?")
_TAG_RE = re.compile(rf"(?!.*::)(?!.*:$)[^\W\d_]{_SYM_CHARS}*(?:/{_SYM_PART})?")
_INT_RE = re.compile(
    r"([+-]?)(?:(0|[1-9][0-9]*)|0[xX]([0-9A-Fa-f]+)|0([0-7]+)|([1-9][0-9]?)[rR]([0-9A-Za-z]+))N?")
_FLOAT_RE = re.compile(r"[+-]?[0-9]+(?:(?:\.[0-9]*(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+)M?|M)")
_RATIO_RE = re.compile(r"([+-]?[0-9]+)/([0-9]+)")
_JSONISH_ESCAPES_RE = re.compile(r'(?:[^\\]++|\\[tnrbf"\\u])*+')
_ESCAPE_RE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|([0-7]{1,3})|(.))", re.S)
_SURROGATE_PAIR_RE = re.compile("[\ud800-\udbff][\udc00-\udfff]")
_INST_RE = re.compile(  # Clojure's: any prefix of the full form, then an optional offset
    r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})"
    r"(?:[Tt]([0-9]{2})(?::([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]+))?)?)?)?)?)?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))?")
_FULL_INST_RE = re.compile(  # the usual full form, which datetime.fromisoformat reads fast
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")
_HEX4_RE = re.compile(r"[0-9a-fA-F]{4}")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

_SIMPLE_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", '"': '"', "\\": "\\"}
_NAMED_CHARS = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r",
                "formfeed": "\f", "backspace": "\b"}
_SYMBOLIC = {"##Inf": float("inf"), "##-Inf": float("-inf"), "##NaN": float("nan")}
_KIND_NAMES = {"[": "vector", "(": "list", "{": "map", "#{": "set"}
_CLOSERS = {"[": "]", "(": ")", "{": "}", "#{": "}"}
_DIGITS = "0123456789"


class _Bad(Exception):
    """Internal: a token that does not read; ``where`` is an offset inside the token."""

    def __init__(self, message, where=0):
        super().__init__(message)
        self.message = message
        self.where = where


# ----------------------------------------------------------------------------
# Scalars (both paths)
# ----------------------------------------------------------------------------

class _Op(int):
    """The fast path's structural opcodes: ints of their own class, so no value is mistaken for one."""

    __slots__ = ()


# Token text -> what it reads as: keywords, symbols, nil/true/false, small ints, and the fast
# path's opcodes for brackets and for the placeholder of a string cut out of the code.
_STR, _OPEN_VEC, _OPEN_MAP, _OPEN_LIST, _OPEN_SET, _CLOSE_VEC, _CLOSE_BRACE, _CLOSE_LIST = map(_Op, range(8))
_BASE_CACHE = {
    "\x01": _STR, "[": _OPEN_VEC, "{": _OPEN_MAP, "(": _OPEN_LIST, "\x03": _OPEN_SET,
    "]": _CLOSE_VEC, "}": _CLOSE_BRACE, ")": _CLOSE_LIST,
    "nil": None, "true": True, "false": False,
    **{str(i): i for i in range(-128, 1024)},
}
_CACHE = dict(_BASE_CACHE)
_CACHE_LIMIT = 50_000
_MISS = object()
_BAIL = object()


def _remember(tok, value):
    global _CACHE
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE = dict(_BASE_CACHE)  # rebind: readers holding the old dict carry on safely
    _CACHE[tok] = value
    return value


def _atom(tok):
    """Read a keyword, symbol or number token; raise ``_Bad`` if it is none of them."""
    c = tok[0]
    if c == ":":
        if _KEYWORD_RE.fullmatch(tok):
            return _remember(tok, Keyword(tok[1:]))
        raise _Bad(f"invalid keyword {tok!r}")
    if c in _DIGITS or (c in "+-" and len(tok) > 1 and tok[1] in _DIGITS):
        return _number(tok)
    v = _BASE_CACHE.get(tok, _MISS)
    if v is not _MISS and v.__class__ is not _Op:
        return v
    if _SYMBOL_RE.fullmatch(tok):
        return _remember(tok, Symbol(tok))
    raise _Bad(f"invalid symbol {tok!r}" if c not in "#'" else f"invalid token {tok!r}")


def _number(tok):
    try:
        if "." in tok and _FLOAT_RE.fullmatch(tok):  # the common float, first
            return float(tok) if tok[-1] != "M" else Decimal(tok[:-1])
        m = _INT_RE.fullmatch(tok)
        if m is not None:
            sign, dec, hexa, octal, radix, digits = m.groups()
            if dec is not None:
                n = int(dec)
            elif hexa is not None:
                n = int(hexa, 16)
            elif octal is not None:
                n = int(octal, 8)
            else:
                base = int(radix)
                if base < 2 or base > 36:
                    raise _Bad(f"invalid number {tok!r}: radix must be 2..36")
                n = int(digits, base)
            return -n if sign == "-" else n
        if _FLOAT_RE.fullmatch(tok):
            if tok[-1] == "M":
                return Decimal(tok[:-1])
            return float(tok)
        m = _RATIO_RE.fullmatch(tok)
        if m is not None:
            den = int(m.group(2))
            if den == 0:
                raise _Bad(f"invalid number {tok!r}: zero denominator")
            r = Fraction(int(m.group(1)), den)
            return r.numerator if r.denominator == 1 else r
    except ValueError as e:  # more digits than int() takes (sys.get_int_max_str_digits())
        raise _Bad(f"invalid number {tok[:40]!r}: {e}") from None
    raise _Bad(f"invalid number {tok!r}")


def _decode_string(lit):
    """``lit`` is a whole string literal with its quotes and at least one backslash."""
    if _JSONISH_ESCAPES_RE.match(lit).end() == len(lit):
        try:  # every escape is one JSON also has: let the C decoder do it
            s, end = _json_scanstring(lit, 1, False)
        except ValueError:
            pass  # a bad \u escape: the slow decoder below says where
        else:
            if end == len(lit):
                return s
    inner = lit[1:-1]
    surrogates = False

    def escape(m):
        nonlocal surrogates
        hexa, octal, other = m.groups()
        if hexa is not None:
            cp = int(hexa, 16)
            surrogates = surrogates or 0xD800 <= cp <= 0xDFFF
            return chr(cp)
        if octal is not None:
            cp = int(octal, 8)
            if cp > 0o377:
                raise _Bad(f"octal escape \\{octal} is out of range (max \\377) in string", m.start() + 1)
            return chr(cp)
        s = _SIMPLE_ESCAPES.get(other)
        if s is None:
            what = "\\u needs four hex digits" if other == "u" else f"unsupported escape {chr(92) + other!r}"
            raise _Bad(f"{what} in string", m.start() + 1)
        return s

    s = _ESCAPE_RE.sub(escape, inner)
    if surrogates:
        s = _SURROGATE_PAIR_RE.sub(lambda m: m.group().encode("utf-16", "surrogatepass").decode("utf-16"), s)
    return s


def _decode_char(tok):
    """``tok`` is a character literal with its backslash."""
    body = tok[1:]
    if len(body) == 1:
        return body
    ch = _NAMED_CHARS.get(body)
    if ch is not None:
        return ch
    if body[0] == "u" and len(body) == 5 and _HEX4_RE.fullmatch(body, 1):
        cp = int(body[1:], 16)
        if 0xD800 <= cp <= 0xDFFF:
            raise _Bad(f"invalid character literal {tok!r}: a lone surrogate")
        return chr(cp)
    if body[0] == "o" and 2 <= len(body) <= 4 and all(c in "01234567" for c in body[1:]):
        cp = int(body[1:], 8)
        if cp <= 0o377:
            return chr(cp)
    raise _Bad(f"unsupported character literal {tok!r}")


def _decode_literal(lit):
    return _decode_string(lit) if lit[0] == '"' else _decode_char(lit)


# Java's named group (?<name>...) is Python's (?P<name>...); escapes and classes are skipped over.
_JAVA_NAMED_GROUP_RE = re.compile(r"\\.|\[\^?\]?(?:\\.|[^\]\\])*\]|(\(\?<)(?=[^\W\d])", re.S)


def _regex(body):
    """Compile the text between the quotes of ``#"..."``; ``_Bad.where`` is an offset in ``body``.

    As in Clojure, the body is the regex verbatim: a backslash and the character after it
    both go to the regex engine (``\\"`` is how a quote gets in). Python's ``re`` compiles
    it; Java's named groups ``(?<name>...)`` are accepted too.
    """
    inserted = []  # offsets in body before which a "P" was inserted

    def named(m):
        if m.group(1) is None:
            return m.group()
        inserted.append(m.start())
        return "(?P<"
    src = _JAVA_NAMED_GROUP_RE.sub(named, body) if "(?<" in body else body
    try:
        return re.compile(src)
    except re.error as e:
        pos = e.pos or 0
        pos -= sum(1 for i, at in enumerate(inserted) if at + i + 2 < pos)
        excerpt = body if len(body) <= 40 else body[:37] + "..."
        raise _Bad(f'invalid regex #"{excerpt}": {e.msg} (at offset {pos} of the pattern)', pos) from None


def compile_regex(source):
    r"""Compile ``source`` as the body of a ``#"..."`` literal (Clojure's ``re-pattern``).

    A ``re.Pattern`` is returned as it is. An invalid regex raises ``ValueError`` naming
    the pattern and the offset of the fault.

    >>> compile_regex(r"(?<year>\d{4})-\d\d").match("2024-05").group("year")
    '2024'
    >>> compile_regex("a(")
    Traceback (most recent call last):
    ...
    ValueError: invalid regex #"a(": missing ), unterminated subpattern (at offset 1 of the pattern)
    """
    if isinstance(source, re.Pattern):
        return source
    if type(source) is not str:
        raise TypeError(f"a regex is a string or a re.Pattern, not {type(source).__name__}: {source!r:.60}")
    try:
        return _regex(source)
    except _Bad as e:
        raise ValueError(e.message) from None


# --- built-in tags ---------------------------------------------------------------

_TZ_CACHE: dict = {}


def _tag_inst(value):
    if type(value) is not str:
        raise _Bad(f"#inst needs a string, found {_describe(value)}")
    if _FULL_INST_RE.fullmatch(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError as e:
            raise _Bad(f"invalid #inst {value!r}: {e}") from None
    m = _INST_RE.fullmatch(value)
    if m is None:
        raise _Bad(f"invalid #inst {value!r}: expected RFC 3339, like \"2024-05-01T12:30:00Z\"")
    year, month, day, hour, minute, second, frac, sign, oh, om = m.groups()
    micro = int((frac + "00000")[:6]) if frac else 0
    if sign is None or (oh == "00" and om == "00"):
        tz = timezone.utc
    else:
        key = (sign, oh, om)
        tz = _TZ_CACHE.get(key)
        if tz is None:
            if int(oh) > 23 or int(om) > 59:
                raise _Bad(f"invalid #inst {value!r}: offset out of range")
            off = timedelta(hours=int(oh), minutes=int(om))
            tz = _TZ_CACHE[key] = timezone(-off if sign == "-" else off)
    try:
        return datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                        int(second or 0), micro, tzinfo=tz)
    except ValueError as e:
        raise _Bad(f"invalid #inst {value!r}: {e}") from None


def _tag_uuid(value):
    if type(value) is not str:
        raise _Bad(f"#uuid needs a string, found {_describe(value)}")
    if not _UUID_RE.fullmatch(value):
        raise _Bad(f"invalid #uuid {value!r}: expected 8-4-4-4-12 hex digits")
    return uuid.UUID(value)


def _tag_uri(value):
    if type(value) is not str:
        raise _Bad(f"#uri needs a string, found {_describe(value)}")
    return URI(value)


_BUILTIN_TAGS = {"inst": _tag_inst, "uuid": _tag_uuid, "uri": _tag_uri}
_BUILTIN_FAST_TAGS = {"#" + k: v for k, v in _BUILTIN_TAGS.items()}


def _tag_tables(tags):
    """(all handlers by tag name, handlers the fast path may call by '#name')."""
    if not tags:
        return _BUILTIN_TAGS, _BUILTIN_FAST_TAGS
    table = dict(_BUILTIN_TAGS)
    for k, fn in tags.items():
        name = k.full_name if isinstance(k, Symbol) else str(k)
        name = name[1:] if name.startswith("#") else name
        if not callable(fn):
            raise TypeError(f"tags[{k!r}] must be callable, got {type(fn).__name__}")
        table[name] = fn
    # The fast path calls only the built-in handlers (pure); user handlers run once, in order,
    # in the careful reader, even if the fast path gave up half way.
    fast = {"#" + n: f for n, f in _BUILTIN_TAGS.items() if table[n] is f}
    return table, fast


def _describe(value):
    """A short description of ``value`` for an error message."""
    kind = {list: "vector", Form: "list", dict: "map", frozenset: "set", tuple: "list"}.get(type(value))
    if kind is not None and len(value) > 8:
        return f"a {kind} of {len(value)} items"
    try:
        text = dumps(value)
    except Exception:  # noqa: BLE001 - only for a message
        text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({type(value).__name__})"


# ----------------------------------------------------------------------------
# Fast path
# ----------------------------------------------------------------------------

def _fast(text, fast_tags, single):
    """Read ``text`` or return ``_BAIL`` when the careful reader must look at it.

    Never accepts what the careful reader would reject, nor reads anything differently.
    """
    if "\x01" in text or "\x03" in text or '#"' in text:  # regex bodies are not strings
        return _BAIL
    code = None
    if "\\" not in text:
        parts = text.split('"')  # no escapes or characters: quotes delimit strings...
        code = " \x01 ".join(parts[0::2])
        if ";" in code or not len(parts) & 1:
            code = None  # ...unless there is a comment (it may hold a quote) or a lone quote
        else:
            lits = parts[1::2]
    if code is None:
        parts = _SPLIT_RE.split(text)
        codes = parts[0::3]
        if ";" in text:  # a match with neither group is a comment: a space, not a string
            lits = []
            seps = []
            for plain, other in zip(parts[1::3], parts[2::3]):
                if plain is not None:
                    lits.append(plain)
                elif other is not None:
                    lits.append(_decode_literal(other))
                else:
                    seps.append(" ")
                    continue
                seps.append(" \x01 ")
            seps.append("")
            code = "".join([piece for pair in zip(codes, seps) for piece in pair])
        else:
            lits = [p if p is not None else _decode_literal(o) for p, o in zip(parts[1::3], parts[2::3])]
            code = " \x01 ".join(codes)
    if "#" in code:
        if "#_" in code or _HASH_GLUED_RE.search(code):
            return _BAIL
        code = code.replace("#{", " \x03 ")
    code = (code.replace("[", " [ ").replace("]", " ] ").replace("{", " { ").replace("}", " } ")
            .replace("(", " ( ").replace(")", " ) ").replace(",", " "))

    cget = _CACHE.get
    miss = _MISS
    floatmatch = _FLOAT_RE.fullmatch
    op, string, close_vec, close_brace, close_list = _Op, _STR, _CLOSE_VEC, _CLOSE_BRACE, _CLOSE_LIST
    open_vec, open_map, open_list = _OPEN_VEC, _OPEN_MAP, _OPEN_LIST
    stack = []  # parent list, opener's opcode, parent list, opener's opcode, ...
    push = stack.append
    pop = stack.pop
    limit = 2 * MAX_DEPTH
    root = cur = []
    append = cur.append
    nextlit = iter(lits).__next__
    it = iter(code.split())
    for tok in it:
        v = cget(tok, miss)
        if type(v) is not op:
            if v is not miss:
                append(v)  # keyword, symbol, nil, true, false, small int
            elif tok.isdigit():
                if not tok.isascii() or (tok[0] == "0" and len(tok) > 1) or len(tok) > 4000:
                    return _BAIL
                append(int(tok))
            elif "." in tok and floatmatch(tok):
                append(float(tok) if tok[-1] != "M" else Decimal(tok[:-1]))
            elif tok[0] == "#":
                v = _SYMBOLIC.get(tok, miss)
                if v is miss:
                    handler = fast_tags.get(tok)
                    if handler is None or next(it, "") != "\x01":
                        return _BAIL
                    v = handler(nextlit())  # raises _Bad on a bad value: the reader explains
                append(v)
            else:
                append(_atom(tok))  # raises _Bad on a bad token
        elif v is string:  # a string or character cut out of the code
            append(nextlit())
        elif v is close_vec:
            if not stack or pop() is not open_vec:
                return _BAIL
            x = cur
            cur = pop()
            append = cur.append
            append(x)
        elif v is close_brace:
            if not stack:
                return _BAIL
            k = pop()
            x = cur
            cur = pop()
            append = cur.append
            n = len(x)
            if k is open_map:
                if n & 1:
                    return _BAIL
                pairs = iter(x)
                x = dict(zip(pairs, pairs))  # TypeError (unhashable key): the reader freezes it
                if len(x) * 2 != n:
                    return _BAIL
            elif k is open_vec or k is open_list:
                return _BAIL
            else:
                x = frozenset(x)
                if len(x) != n:
                    return _BAIL
            append(x)
        elif v is close_list:
            if not stack or pop() is not open_list:
                return _BAIL
            x = Form(cur)
            cur = pop()
            append = cur.append
            append(x)
        else:  # an opening bracket
            if len(stack) >= limit:
                return _BAIL
            push(cur)
            push(v)
            cur = []
            append = cur.append
    if stack:
        return _BAIL
    if single:
        return root[0] if len(root) == 1 else _BAIL
    return root


# ----------------------------------------------------------------------------
# Careful reader: the reference, with positions for every error
# ----------------------------------------------------------------------------

class _Reader:
    __slots__ = ("text", "tags", "single", "items", "poss", "frames", "pend", "ndiscard", "discarding")

    def __init__(self, text, tags, single):
        self.text = text
        self.tags = tags
        self.single = single

    def at(self, pos):
        line, col = _line_col(self.text, pos)
        return f"line {line}, column {col}"

    def fail(self, message, pos):
        raise _syntax_error(self.text, message, pos) from None

    def run(self):
        text = self.text
        root = self.items = []
        self.poss = []
        self.frames = []
        self.pend = []  # tags and discards waiting for the next form, innermost last
        self.ndiscard = 0  # how many of them are discards
        self.discarding = False  # inside a form that a #_ will drop
        cget = _CACHE.get
        for m in _TOKEN_RE.finditer(text):
            g = m.lastgroup
            if g == "atom":
                tok = m.group(g)
                pos = m.start(g)
                self.begin(pos)
                v = cget(tok, _MISS)
                if v is _MISS or v.__class__ is _Op:
                    try:
                        v = _atom(tok)
                    except _Bad as e:
                        self.fail(e.message, pos + e.where)
                self.emit(v, pos)
            elif g == "str":
                pos = m.start(g) - 1
                self.begin(pos)
                s = m.group(g)
                if "\\" in s:
                    try:
                        s = _decode_string(text[pos:m.end()])
                    except _Bad as e:
                        self.fail(e.message, pos + e.where)
                self.emit(s, pos)
            elif g == "open":
                self.open(m.group(g), m.start(g))
            elif g == "close":
                self.close(m.group(g), m.start(g))
            elif g == "char":
                pos = m.start(g)
                self.begin(pos)
                try:
                    v = _decode_char(m.group(g))
                except _Bad as e:
                    self.fail(e.message, pos)
                self.emit(v, pos)
            elif g == "regex":
                pos = m.start(g) - 2
                self.begin(pos)
                try:
                    v = _regex(m.group(g))
                except _Bad as e:
                    self.fail(e.message, pos + 2 + e.where)
                self.emit(v, pos)
            elif g == "discard":
                self.prefix("discard", m.start(g), None)
            elif g == "disp":
                self.dispatch(m.group(g), m.start(g))
            elif g == "bad":
                self.bad(m.group(g), m.start(g))
            else:  # end
                break
        return self.finish(root, len(text))

    # --- forms ------------------------------------------------------------------
    def begin(self, pos):
        """A form (not a discard) starts at ``pos``: loads() reads only one."""
        if self.single and not self.frames and self.items and not self.pend:
            self.fail(f"expected a single form, found another form at {self.at(pos)} "
                      f"(the first one starts at {self.at(self.poss[0])}; use read_all for several)", pos)

    def prefix(self, kind, pos, payload):
        if len(self.pend) >= MAX_DEPTH:
            self.fail(f"more than {MAX_DEPTH} tags and discards before one form", pos)
        self.pend.append((kind, pos, payload))
        if kind == "discard":
            self.ndiscard += 1

    def emit(self, v, pos):
        pend = self.pend
        while pend:
            kind, ppos, payload = pend.pop()
            if kind == "discard":
                self.ndiscard -= 1
                return
            if self.discarding or self.ndiscard:
                continue  # a discarded form is only checked for syntax
            v = self.apply(kind, ppos, payload, v)
            pos = ppos  # a tagged form starts at its (outermost) tag
        self.items.append(v)
        self.poss.append(pos)

    def apply(self, kind, ppos, payload, v):
        if kind == "nsmap":
            return self.namespace_map(payload, ppos, v)
        name, handler = payload
        try:
            return handler(v)
        except _Bad as e:
            self.fail(e.message, ppos)
        except EdnSyntaxError:
            raise
        except Exception as e:  # noqa: BLE001 - a user's tag handler
            err = _syntax_error(self.text, f"tag #{name} failed on {_describe(v)}: "
                                           f"{type(e).__name__}: {e}", ppos)
            raise err from e

    def namespace_map(self, ns, ppos, v):
        if type(v) is not dict:
            self.fail(f"#:{ns} must be followed by a map, found {_describe(v)}", ppos)
        out = {}
        for k, val in v.items():
            t = type(k)
            if (t is Keyword or t is Symbol) and k.ns is None:
                k = t(f"{ns}/{k.name}")
            elif (t is Keyword or t is Symbol) and k.ns == "_":
                k = t(k.name)
            if k in out:
                self.fail(f"duplicate key {_describe(k)} in namespaced map #:{ns}", ppos)
            out[k] = val
        return out

    def open(self, tok, pos):
        self.begin(pos)
        if len(self.frames) >= MAX_DEPTH:
            self.fail(f"nesting deeper than {MAX_DEPTH} levels", pos)
        self.frames.append((tok, pos, self.items, self.poss, self.pend, self.ndiscard, self.discarding))
        self.discarding = self.discarding or self.ndiscard > 0
        self.items = []
        self.poss = []
        self.pend = []
        self.ndiscard = 0

    def close(self, tok, pos):
        if not self.frames:
            self.fail(f"unmatched {tok!r} at {self.at(pos)}", pos)
        kind, start, parent, parent_poss, parent_pend, parent_ndiscard, discarding = self.frames[-1]
        if _CLOSERS[kind] != tok:
            self.fail(f"mismatched {tok!r} at {self.at(pos)}: the {_KIND_NAMES[kind]} starting at "
                      f"{self.at(start)} needs {_CLOSERS[kind]!r}", pos)
        if self.pend:
            self.dangling(f"before {tok!r} at {self.at(pos)}")
        items, poss = self.items, self.poss
        if kind == "[":
            v = items
        elif kind == "(":
            v = Form(items)
        elif kind == "{":
            v = self.build_map(items, poss, start)
        else:
            v = self.build_set(items, poss, start)
        self.frames.pop()
        self.items, self.poss, self.pend, self.discarding = parent, parent_poss, parent_pend, discarding
        self.ndiscard = parent_ndiscard
        self.emit(v, start)

    def build_map(self, items, poss, start):
        n = len(items)
        if n & 1:
            self.fail(f"map literal with odd number of forms ({n}) at {self.at(start)}: "
                      f"key {_describe(items[-1])} at {self.at(poss[-1])} has no value", start)
        out = {}
        for i in range(0, n, 2):
            k = self.frozen(items[i], poss[i], "map key")
            if k in out:
                self.duplicate("key", k, out, poss[i], "map", start)
            out[k] = items[i + 1]
        return out

    def build_set(self, items, poss, start):
        out = set()
        for x, p in zip(items, poss):
            x = self.frozen(x, p, "set element")
            if x in out:
                self.duplicate("element", x, out, p, "set", start)
            out.add(x)
        return frozenset(out)

    def frozen(self, x, pos, what):
        try:
            return _freeze(x)
        except TypeError as e:
            self.fail(f"{what} {_describe(x)} at {self.at(pos)} cannot be hashed ({e})", pos)

    def duplicate(self, what, x, seen, pos, kind, start):
        first = next(y for y in seen if y == x)
        try:
            same = dumps(first) == dumps(x)
        except Exception:  # noqa: BLE001 - only for a message
            same = True
        if same:
            self.fail(f"duplicate {what} {_describe(x)} in {kind} at {self.at(pos)} "
                      f"({kind} starts at {self.at(start)})", pos)
        self.fail(f"{kind} {what}s {_describe(first)} and {_describe(x)} are equal in Python and "
                  f"cannot both be kept, at {self.at(pos)}", pos)

    def dispatch(self, tok, pos):
        v = _SYMBOLIC.get(tok)
        if v is not None:
            self.begin(pos)
            self.emit(v, pos)
            return
        if tok.startswith("##"):
            self.fail(f"invalid symbolic value {tok!r} (expected ##Inf, ##-Inf or ##NaN)", pos)
        if tok.startswith("#:"):
            ns = tok[2:]
            if ns.startswith(":"):
                self.fail("auto-resolved namespaced maps (#::) are not EDN", pos)
            if not ns or "/" in ns or not _SYMBOL_RE.fullmatch(ns):
                self.fail(f"invalid namespaced map prefix {tok!r}", pos)
            self.begin(pos)
            self.prefix("nsmap", pos, ns)
            return
        if tok == "#":
            nxt = self.text[pos + 1:pos + 2]
            if nxt == '"':
                self.fail(f"unterminated regex starting at {self.at(pos)}", pos)
            what = {"(": "anonymous functions #( )", "'": "var quotes #'", "^": "metadata #^",
                    "": "a lone '#' at the end"}.get(nxt)
            self.fail(f"{what or f'dispatch #{nxt}'} is not EDN, at {self.at(pos)}", pos)
        if tok.startswith("#?"):
            self.fail(f"reader conditionals ({tok}) are not EDN, at {self.at(pos)}", pos)
        name = tok[1:]
        if not _TAG_RE.fullmatch(name):
            self.fail(f"invalid tag {tok!r} at {self.at(pos)}: a tag is a symbol starting with a letter",
                      pos)
        self.begin(pos)
        handler = self.tags.get(name)
        if handler is None and not (self.discarding or self.ndiscard):
            known = ", ".join("#" + t for t in sorted(self.tags))
            self.fail(f"unknown tag {tok} at {self.at(pos)} (known: {known}; "
                      f"pass tags={{{name!r}: function}} to read it)", pos)
        self.prefix("tag", pos, (name, handler))

    def bad(self, ch, pos):
        if ch == '"':
            msg = f"unterminated string starting at {self.at(pos)}"
        elif ch == "^":
            msg = f"metadata (^) is not supported, at {self.at(pos)}"
        elif ch == "\\":
            msg = f"a character literal needs a character after the backslash, at {self.at(pos)}"
        elif ch == "'":
            msg = f"quote (') is not EDN, at {self.at(pos)}"
        else:
            msg = f"unexpected character {ch!r} at {self.at(pos)}"
        self.fail(msg, pos)

    def dangling(self, where):
        kind, ppos, payload = self.pend[-1]
        if kind == "discard":
            self.fail(f"#_ at {self.at(ppos)} has no form to discard {where}", ppos)
        name = f"#:{payload}" if kind == "nsmap" else f"#{payload[0]}"
        self.fail(f"tag {name} at {self.at(ppos)} is not followed by a form {where}", ppos)

    def finish(self, root, end):
        if self.frames:
            kind, start = self.frames[-1][:2]
            self.fail(f"unterminated {_KIND_NAMES[kind]} starting at {self.at(start)}: "
                      f"expected {_CLOSERS[kind]!r} before the end of input", start)
        if self.pend:
            self.dangling("before the end of input")
        if self.single:
            if not root:
                self.fail("expected an EDN form, found only whitespace and comments"
                          if self.text.strip() else "expected an EDN form, found empty input", end)
            return root[0]
        return root


def _freeze(x):
    """``x`` itself when hashable, else a hashable copy: lists to tuples, maps to frozensets
    of ``(key, value)`` tuples, sets to frozensets. ``TypeError`` for anything else."""
    if _hashable(x):
        return x
    # Iterative, as the nesting can be deeper than Python's recursion limit.
    stack = [(x, iter(_children(x)), [])]
    while True:
        node, it, acc = stack[-1]
        for child in it:
            if _hashable(child):
                acc.append(child)
            else:
                stack.append((child, iter(_children(child)), []))
                break
        else:
            stack.pop()
            t = type(node)
            if t is dict:
                pairs = iter(acc)
                frozen = frozenset(zip(pairs, pairs))
            elif t is Form:
                frozen = Form(acc)
            elif t is set:
                frozen = frozenset(acc)
            else:
                frozen = tuple(acc)
            if not stack:
                return frozen
            stack[-1][2].append(frozen)


def _children(x):
    t = type(x)
    if t is dict:
        return chain.from_iterable(x.items())
    if t is list or t is tuple or t is Form or t is set:
        return x
    raise TypeError(f"unhashable type: {t.__name__!r}")


def _hashable(x):
    try:
        hash(x)
        return True
    except TypeError:
        return False


# ----------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------

def _line_col(text, pos):
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


def _syntax_error(text, message, pos):
    pos = max(0, min(pos, len(text)))
    line, col = _line_col(text, pos)
    start = text.rfind("\n", 0, pos) + 1
    stop = text.find("\n", pos)
    stop = len(text) if stop < 0 else stop
    lo, hi = max(start, pos - 30), min(stop, pos + 30)
    excerpt = "".join(c if c.isprintable() else " " for c in text[lo:hi])
    caret = pos - lo
    if lo > start:
        excerpt, caret = "..." + excerpt, caret + 3
    if hi < stop:
        excerpt += "..."
    if "line " not in message:
        message = f"{message} at line {line}, column {col}"
    return EdnSyntaxError(f"{message}\n  {excerpt}\n  {' ' * caret}^",
                          data={"line": line, "column": col, "offset": pos})


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------

def _text(text):
    if type(text) is str:
        return text[1:] if text[:1] == "\ufeff" else text  # a byte-order mark is not a form
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            return _text(bytes(text).decode("utf-8"))
        except UnicodeDecodeError as e:
            raise EdnSyntaxError(f"EDN bytes are not UTF-8: {e}", data={"offset": e.start}) from None
    if isinstance(text, str):
        return _text(str(text))
    raise TypeError(f"EDN text must be str or UTF-8 bytes, got {type(text).__name__}")


def _read(text, tags, single):
    text = _text(text)
    table, fast_tags = _tag_tables(tags)
    try:
        value = _fast(text, fast_tags, single)
    except Exception:  # noqa: BLE001 - anything odd: the careful reader decides and explains
        value = _BAIL
    if value is _BAIL:
        value = _Reader(text, table, single).run()
    return value


def loads(text, *, tags=None):
    """Read exactly one EDN form from ``text`` (``str``, or UTF-8 ``bytes``).

    Whitespace and comments may surround the form; a second form is an error
    (use :func:`read_all`). ``tags`` maps extra tag names (``"myapp/point"`` or
    ``"#myapp/point"``) to a function of the tagged value; it may also override
    ``inst``, ``uuid`` and ``uri``. Tag functions are called once per tagged form,
    innermost first, and not at all inside ``#_``-discarded forms.

    >>> loads('{:db/ident :person/name, :db/cardinality :db.cardinality/one}')
    {Keyword('db/ident'): Keyword('person/name'), Keyword('db/cardinality'): Keyword('db.cardinality/one')}
    >>> loads('[1 2.5 3M "x" \\\\y nil #{true}]')
    [1, 2.5, Decimal('3'), 'x', 'y', None, frozenset({True})]
    >>> loads('#inst "2024-05-01T12:30:00Z"')
    datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    >>> loads('#point [1 2]', tags={"point": tuple})
    (1, 2)
    >>> loads('[1 2')
    Traceback (most recent call last):
    ...
    fastdatomic.errors.EdnSyntaxError: unterminated vector starting at line 1, column 1: expected ']' before the end of input
      [1 2
      ^
    """
    return _read(text, tags, True)


def read_all(text, *, tags=None):
    """Read every EDN form in ``text`` into a list (``[]`` for blank text).

    >>> read_all('1 :a ; a comment\\n"b" #_ ignored (c)')
    [1, Keyword('a'), 'b', Form((Symbol('c'),))]
    """
    return _read(text, tags, False)


# ----------------------------------------------------------------------------
# Printer
# ----------------------------------------------------------------------------

_PRINTABLE: dict = {}  # Keyword/Symbol -> its EDN text, once checked


def _printable(k, s, ok):
    if not ok:
        kind = "keyword" if type(k) is Keyword else "symbol"
        raise ValueError(f"{kind} {s!r} cannot be written as EDN (it would not read back)")
    if len(_PRINTABLE) >= _CACHE_LIMIT:
        _PRINTABLE.clear()
    _PRINTABLE[k] = s
    return s


def _dump_keyword(k):
    s = _PRINTABLE.get(k)
    if s is None:
        s = ":" + k.full_name
        s = _printable(k, s, _KEYWORD_RE.fullmatch(s))
    return s


def _dump_symbol(k):
    s = _PRINTABLE.get(k)
    if s is None:
        s = k.full_name
        s = _printable(k, s, _SYMBOL_RE.fullmatch(s) and s not in ("nil", "true", "false"))
    return s


_FLOAT_SPECIAL = {"inf": "##Inf", "-inf": "##-Inf", "nan": "##NaN"}


def _dump_float(x):
    r = float.__repr__(x)
    return _FLOAT_SPECIAL.get(r, r)


def _dump_decimal(x):
    if not x.is_finite():
        raise ValueError(f"{x!r} has no EDN form (EDN decimals are finite)")
    return f"{x}M"


def _dump_fraction(x):
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _dump_datetime(x):
    off = x.utcoffset()
    if off is None:
        raise ValueError(f"cannot write naive datetime {x!r} as #inst: give it a time zone "
                         f"(e.g. tzinfo=timezone.utc)")
    if off % timedelta(minutes=1):  # RFC 3339 offsets are whole minutes: write it in UTC
        try:
            x = x.astimezone(timezone.utc)
        except (OverflowError, ValueError):
            raise ValueError(f"cannot write {x!r} as #inst: out of range in UTC") from None
        off = timedelta(0)
    s = x.isoformat(timespec="microseconds" if x.microsecond else "milliseconds")
    if not off:
        s = s[:-6] + "Z"
    return f'#inst "{s}"'


_REGEX_FLAGS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"), (re.VERBOSE, "x"),
                (re.ASCII, "a"))


def _dump_regex(p):
    src = p.pattern
    if type(src) is not str:
        raise ValueError(f"cannot write bytes pattern {p!r:.60} as EDN (#\"...\" is text)")
    # A bare quote needs a backslash inside #"..."; escapes pass through as they are.
    body = re.sub(r'\\.|"', lambda m: '\\"' if m.group() == '"' else m.group(), src, flags=re.S)
    extra = p.flags & ~re.compile(src).flags  # flags given to re.compile, not written inline
    if extra:
        inline = "".join(c for f, c in _REGEX_FLAGS if extra & f)
        if extra & ~sum(f for f, _ in _REGEX_FLAGS) & ~re.UNICODE or not inline:
            raise ValueError(f"cannot write {p!r:.60} as EDN: its flags have no inline form")
        body = f"(?{inline}){body}"
    return f'#"{body}"'


_DUMPERS = {
    str: _encode_str,
    re.Pattern: _dump_regex,
    Keyword: _dump_keyword,
    int: int.__repr__,
    bool: lambda x: "true" if x else "false",
    type(None): lambda x: "nil",
    float: _dump_float,
    Symbol: _dump_symbol,
    Decimal: _dump_decimal,
    Fraction: _dump_fraction,
    uuid.UUID: lambda x: f'#uuid "{x}"',
    URI: lambda x: "#uri " + _encode_str(x.value),
    datetime: _dump_datetime,
}


def _dump_other(x, default=None):
    """Subclasses of the supported types: the text of a scalar, or (opener, items, closer);
    any other type is ``default``'s text."""
    if isinstance(x, bool):
        return "true" if x else "false"
    for t in (str, int, float, Decimal, Fraction, datetime, uuid.UUID, URI, Keyword, Symbol):
        if isinstance(x, t):
            return _DUMPERS[t](x)
    if isinstance(x, dict):
        return ("{", chain.from_iterable(x.items()), "}")
    if isinstance(x, list):
        return ("[", x, "]")
    if isinstance(x, tuple):
        return ("(", x, ")")
    if isinstance(x, (set, frozenset)):
        return ("#{", x, "}")
    if default is not None:
        r = default(x)
        if type(r) is not str:
            raise TypeError(f"dumps default= returned {type(r).__name__}, not EDN text, for {x!r:.60}")
        return r
    raise TypeError(f"cannot write {type(x).__module__}.{type(x).__qualname__} as EDN: {x!r:.60}")


BYTES_TAG = "fastdatomic/bytes"


def tagged_bytes(x):
    """A ``dumps`` ``default`` writing byte strings (``bytes``, ``bytearray``,
    ``memoryview``), which EDN has no form for, as ``#fastdatomic/bytes "<base64>"``;
    ``loads(text, tags=BYTES_TAGS)`` reads them back. The peer sends ``:db.type/bytes``
    values to the transactor so. Other types raise ``TypeError``.

    >>> text = dumps([b"\\x00\\xff", 1], default=tagged_bytes); text
    '[#fastdatomic/bytes "AP8=" 1]'
    >>> loads(text, tags=BYTES_TAGS)
    [b'\\x00\\xff', 1]
    """
    if isinstance(x, (bytes, bytearray, memoryview)):
        import base64
        return f'#{BYTES_TAG} "{base64.b64encode(x).decode("ascii")}"'
    raise TypeError(f"cannot write {type(x).__module__}.{type(x).__qualname__} as EDN: {x!r:.60}")


def _read_tagged_bytes(value):
    import base64
    import binascii
    if not isinstance(value, str):
        raise ValueError(f"#{BYTES_TAG} needs a base64 string, found {value!r:.60}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"invalid #{BYTES_TAG} {value!r:.60}: {e}") from None


#: ``loads`` tags reading ``#fastdatomic/bytes "<base64>"`` (see :func:`tagged_bytes`).
BYTES_TAGS = {BYTES_TAG: _read_tagged_bytes}


def dumps(obj, default=None):
    """Write ``obj`` as EDN text that :func:`loads` reads back equal.

    ``list`` is a vector, ``tuple`` (and :class:`Form`) a list, ``dict`` a map,
    ``set``/``frozenset`` a set, ``Decimal`` gets ``M``, aware ``datetime`` is
    ``#inst``, ``UUID`` ``#uuid`` and ``URI`` ``#uri``. Other types raise ``TypeError``;
    values with no EDN form (a naive datetime, ``Decimal('NaN')``, a keyword with a
    space) raise ``ValueError``, as does nesting deeper than ``MAX_DEPTH`` (or a cycle).
    ``default``, as in ``json.dumps``, is called with each object of another type and
    returns its EDN text or raises ``TypeError`` (e.g. :func:`tagged_bytes`).

    >>> dumps([Keyword("db/add"), "tmp", Keyword("person/name"), "Ann \\"A\\""])
    '[:db/add "tmp" :person/name "Ann \\\\"A\\\\""]'
    >>> dumps((Symbol("pull"), Symbol("?e"), [Symbol("*")]))
    '(pull ?e [*])'
    >>> dumps({"a": [1.5, float("nan"), Decimal("2.50"), None, True]})
    '{"a" [1.5 ##NaN 2.50M nil true]}'
    """
    out = []
    w = out.append
    dumpers = _DUMPERS
    stack = []
    it = iter((obj,))
    close = ""
    sep = ""
    while True:
        for x in it:
            t = x.__class__
            f = dumpers.get(t)
            if f is not None:
                w(sep)
                w(f(x))
                sep = " "
                continue
            if t is list:
                opener, items, closer = "[", x, "]"
            elif t is dict:
                opener, items, closer = "{", chain.from_iterable(x.items()), "}"
            elif t is Form or t is tuple:
                opener, items, closer = "(", x, ")"
            elif t is frozenset or t is set:
                opener, items, closer = "#{", x, "}"
            else:
                r = _dump_other(x, default)
                if type(r) is str:
                    w(sep)
                    w(r)
                    sep = " "
                    continue
                opener, items, closer = r
            if len(stack) >= MAX_DEPTH:
                raise ValueError(f"cannot write EDN nested deeper than {MAX_DEPTH} levels "
                                 f"(or a collection that contains itself)")
            w(sep)
            w(opener)
            stack.append((it, close))
            it = iter(items)
            close = closer
            sep = ""
            break
        else:
            w(close)
            if not stack:
                return "".join(out)
            it, close = stack.pop()
            sep = " "
