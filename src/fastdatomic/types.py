"""Value types that Python lacks: Keyword, Symbol and URI (leaf module).

Datomic keeps keywords, symbols and strings apart; so do we. A ``Keyword`` never
equals a ``str`` with the same text, and keywords are interned, so equality and
hashing are identity-fast on the hot paths (attribute idents are keywords).
"""

from __future__ import annotations

__all__ = ["Keyword", "Symbol", "URI", "kw", "sym"]


class _Named:
    """Shared shape of Keyword and Symbol: an optional namespace and a name."""

    __slots__ = ("ns", "name", "_full", "__weakref__")
    _table: dict  # per subclass intern table
    _prefix = ""

    def __new__(cls, text: str, name: str | None = None):
        if name is not None:  # Keyword("person", "name")
            text = f"{text}/{name}" if text else name
        elif isinstance(text, cls):
            return text
        if not isinstance(text, str):
            raise TypeError(f"{cls.__name__} needs a str, got {type(text).__name__}: {text!r}")
        if text.startswith(cls._prefix) and cls._prefix:
            text = text[1:]
        found = cls._table.get(text)
        if found is not None:
            return found
        if not text:
            raise ValueError(f"{cls.__name__} name must not be empty")
        self = object.__new__(cls)
        slash = text.find("/") if len(text) > 1 else -1
        self.ns = text[:slash] if slash > 0 else None
        self.name = text[slash + 1:] if slash > 0 else text
        self._full = text
        cls._table[text] = self
        return self

    def __reduce__(self):
        return (type(self), (self._full,))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    # Interned: equality is identity, so object's own ==, != and hash (in C) are exactly
    # right, and a dict keyed by attribute idents never calls back into Python.
    # Order follows Clojure: namespace first (none first), then name.

    def _key(self):
        return (self.ns is not None, self.ns or "", self.name)

    def __lt__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._key() < other._key()

    def __le__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._key() <= other._key()

    def __gt__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._key() > other._key()

    def __ge__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._key() >= other._key()

    @property
    def full_name(self) -> str:
        """The text without the leading colon, e.g. ``"person/name"``."""
        return self._full

    def __str__(self):
        return self._prefix + self._full


class Keyword(_Named):
    """An EDN keyword such as ``:person/name``.

    >>> k = Keyword(":person/name")
    >>> k is Keyword("person/name"), k.ns, k.name, str(k)
    (True, 'person', 'name', ':person/name')
    >>> k == "person/name"
    False
    """

    __slots__ = ()
    _table: dict = {}
    _prefix = ":"

    def __repr__(self):
        return f"Keyword({self._full!r})"


class Symbol(_Named):
    """An EDN symbol such as ``my.ns/fn`` (a value type of its own in Datomic).

    >>> Symbol("my.ns/inc").ns
    'my.ns'
    """

    __slots__ = ()
    _table: dict = {}
    _prefix = ""

    def __repr__(self):
        return f"Symbol({self._full!r})"


class URI:
    """A URI value (Datomic's ``:db.type/uri``), kept apart from plain strings.

    >>> URI("https://example.com/a") == URI("https://example.com/a")
    True
    >>> URI("https://example.com/a") == "https://example.com/a"
    False
    """

    __slots__ = ("value",)

    def __init__(self, value: str):
        if isinstance(value, URI):
            value = value.value
        if not isinstance(value, str):
            raise TypeError(f"URI needs a str, got {type(value).__name__}: {value!r}")
        self.value = value

    def __eq__(self, other):
        return type(other) is URI and other.value == self.value

    def __hash__(self):
        return hash(("uri", self.value))

    def __lt__(self, other):
        if type(other) is not URI:
            return NotImplemented
        return self.value < other.value

    def __reduce__(self):
        return (URI, (self.value,))

    def __str__(self):
        return self.value

    def __repr__(self):
        return f"URI({self.value!r})"


def kw(text: str) -> Keyword:
    """Shorthand for ``Keyword(text)``.

    >>> kw(":db/ident")
    Keyword('db/ident')
    """
    return Keyword(text)


def sym(text: str) -> Symbol:
    """Shorthand for ``Symbol(text)``.

    >>> sym("?e")
    Symbol('?e')
    """
    return Symbol(text)
