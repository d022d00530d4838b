"""A fast reader for GraphDef text (``graph.pbtxt``) that parses only the nodes it needs.

protobuf's ``text_format`` parses about 2.5 MB/s, far too slow for the 20-50 MB
``graph.pbtxt`` of a production model (design.md). Most of such a file is
initializers, gradients and optimizer ops that ckptmap never looks at, so this
module does two things:

1. **Scan.** ``tf.io.write_graph`` writes protobuf's standard layout: one field per
   line, two spaces of indentation per level, so a top-level block ends at the
   first line that is a bare ``}`` and strings never span lines. Splitting the
   text there (in C, ``str.split``) gives every ``node { ... }`` block, and the
   first two lines of a block give its ``name`` and ``op``. Blocks that do not
   start that way are parsed in full; if the layout is not the standard one at
   all, the whole file is parsed (correct, slower).
2. **Parse on demand.** :meth:`GraphText.node` tokenizes one block with a small
   text-format parser (strings with C escapes including octal ``\\303\\274``,
   nested messages in ``{}`` or ``<>``, repeated fields, list syntax ``[a, b]``,
   enums, ``#`` comments) into plain dicts, then picks out the facts the graph
   logic needs. :meth:`GraphText.inputs` reads only a block's ``input:`` lines.

Syntax errors in the blocks that are parsed are reported with their line and
column. Blocks that are skipped are not checked: use ``fast=False`` (protobuf's
own parser) to validate a whole file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeAlias

from ckptmap.errors import GraphError
from ckptmap.proto import ckptmap_tf_pb2
from ckptmap.readers._graphdef import GraphNode

Value: TypeAlias = "bytes | str | Message"
Message: TypeAlias = "dict[str, list[Value]]"

_FIX = "fix the file, or write it again with tf.io.write_graph"
_MAX_DEPTH = 100
_DT_STRING = 7

# One token after optional whitespace and comments: a double- or single-quoted
# string (no raw newlines), an identifier, a number-like word (12, -1, 1.5e-3,
# 0x1f, -inf), any other single character (punctuation, or an error), or the
# empty string at the end. The pattern never fails, so it never backtracks.
_TOKEN = re.compile(
    r"""\s*(?:\#[^\n]*(?:\n|\Z)\s*)*
    ( "(?:[^"\\\n]|\\.)*"
    | '(?:[^'\\\n]|\\.)*'
    | [A-Za-z_][A-Za-z0-9_]*
    | [-+.0-9][A-Za-z0-9_.+-]*
    | \S
    | \Z )""",
    re.VERBOSE,
)
# The escapes of protobuf's text-format tokenizer (io/tokenizer.cc): octal with 1-3
# digits, \x with 1-2 hex digits, \u with 4 and \U with 8 hex digits (a \u
# head surrogate followed by a \u trail surrogate is one code point), and the
# simple escapes below. Anything else after a backslash is malformed.
_ESCAPE = re.compile(
    r"""\\(?: ([0-7]{1,3})
          | [xX]([0-9A-Fa-f]{1,2})
          | u([0-9A-Fa-f]{4})(?:\\u([dD][c-fC-F][0-9A-Fa-f]{2}))?
          | U([0-9A-Fa-f]{8})
          | (.|\Z) )""",
    re.DOTALL | re.VERBOSE,
)
_SIMPLE_ESCAPES = {
    "n": b"\n",
    "t": b"\t",
    "r": b"\r",
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "v": b"\v",
    "\\": b"\\",
    "'": b"'",
    '"': b'"',
    "?": b"?",
}
_HEAD_SURROGATES = range(0xD800, 0xDC00)
_SURROGATES = range(0xD800, 0xE000)
_TRUE = frozenset({"true", "True", "t", "1"})
_FALSE = frozenset({"false", "False", "f", "0"})
_OCTAL = re.compile(r"[-+]?0[0-7]+")

# The standard layout (text_format.MessageToString, as tf.io.write_graph uses).
_BLOCK_END = "\n}\n"
_NODE_HEAD = 'node {\n  name: "'
_OP_LINE = '"\n  op: "'
_NODE_HEAD_RE = re.compile(r'node \{\n  name: "((?:[^"\\\n]|\\.)*)"\n  op: "((?:[^"\\\n]|\\.)*)"\n')
_BLOCK_START = re.compile(r"([A-Za-z_][A-Za-z0-9_]*) \{\n")
_ATTR_END = "\n  }\n"  # the closing line of a node's attr entry
_READ_ATTRS = ("dtype", "shape", "dtypes", "value")  # the attrs node_from_attrs reads
# The two attrs of every variable node, in the standard layout, matched whole in C;
# anything else (unknown rank, other spellings) goes through the parser.
_DTYPE_ATTR = re.compile(
    r'  attr \{\n    key: "dtype"\n    value \{\n      type: ([A-Z][A-Z0-9_]*)\n    \}\n  \}\n'
)
_SHAPE_ATTR = re.compile(
    r'  attr \{\n    key: "shape"\n    value \{\n      shape \{\n'
    r"((?:        dim \{\n(?:          size: -?[0-9]+\n)?        \}\n)*)"
    r"      \}\n    \}\n  \}\n"
)
_DIM = re.compile(r"        dim \{\n(?:          size: (-?[0-9]+)\n)?        \}\n")
_INPUT_LINE = re.compile(r'^[ \t]*input[ \t]*:[ \t]*"((?:[^"\\\n]|\\.)*)"', re.MULTILINE)


class _Fallback(Exception):
    """The text is not in the standard layout; parse all of it."""


# ---------------------------------------------------------------------------
# Tokens and values
# ---------------------------------------------------------------------------


def line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of offset ``pos`` in ``text``."""
    line_start = text.rfind("\n", 0, pos) + 1
    return text.count("\n", 0, pos) + 1, pos - line_start + 1


class Location:
    """A place in a text file, formatted as ``path:line:column`` only when a message needs it."""

    __slots__ = ("path", "pos", "text")

    def __init__(self, path: str, text: str, pos: int) -> None:
        self.path = path
        self.text = text
        self.pos = pos

    def __str__(self) -> str:
        line, col = line_col(self.text, self.pos)
        return f"{self.path}:{line}:{col}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def unescape(body: str) -> bytes:
    """The bytes of a text-format string literal's body (C escapes, UTF-8 otherwise).

    Escapes are decoded as protobuf's text-format tokenizer defines them:
    ``\\a \\b \\f \\n \\r \\t \\v \\\\ \\' \\" \\?``, octal ``\\N`` to ``\\NNN``,
    hex ``\\xH`` and ``\\xHH``, and ``\\uHHHH``/``\\UHHHHHHHH`` as UTF-8 (a
    surrogate pair of two ``\\u`` escapes is one code point).

    Raises:
        ValueError: for any other escape (``\\y``, ``\\x`` without a hex digit,
            ``\\u`` with fewer than four), an octal value above ``\\377``
            (protobuf's Python parser refuses it), a code point above U+10FFFF or
            a lone surrogate (neither can be UTF-8).
    """
    if "\\" not in body:
        return body.encode("utf-8")
    out = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(body):
        out += body[pos : match.start()].encode("utf-8")
        pos = match.end()
        octal, hexa, short_u, trail, long_u, char = match.groups()
        if octal is not None:
            value = int(octal, 8)
            if value > 0xFF:
                raise ValueError(f"octal escape \\{octal} is above \\377")
            out.append(value)
        elif hexa is not None:
            out.append(int(hexa, 16))
        elif short_u is not None or long_u is not None:
            out += _code_point(short_u or long_u, trail).encode("utf-8")
        elif char in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[char]
        elif char:
            raise ValueError(f"unknown escape \\{char}")
        else:
            raise ValueError("a backslash ends the string")
    out += body[pos:].encode("utf-8")
    return bytes(out)


def _code_point(digits: str, trail: str | None) -> str:
    code = int(digits, 16)
    if trail is not None:
        low = int(trail, 16)
        if code not in _HEAD_SURROGATES:
            raise ValueError(f"\\u escape {low:#06x} is a lone surrogate, not a character")
        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
    if code > 0x10FFFF:
        raise ValueError(f"\\U escape {code:#x} is above U+10FFFF, not a character")
    if code in _SURROGATES:
        raise ValueError(f"\\u escape {code:#06x} is a lone surrogate, not a character")
    return chr(code)


def _show(token: str) -> str:
    return repr(token if len(token) <= 40 else token[:37] + "...")


class _Parser:
    """Recursive-descent parser of protobuf text format over ``text[start:end]``.

    Tokens are found with one ``findall`` (fast, no positions); positions are
    recomputed only to report an error.
    """

    def __init__(self, text: str, start: int, end: int, where: str) -> None:
        self.text = text
        self.start = start
        self.end = end
        self.where = where
        self.toks: list[str] = _TOKEN.findall(text, start, end)
        while self.toks and not self.toks[-1]:
            self.toks.pop()  # the empty matches at the end
        self.i = 0

    def parse(self) -> Message:
        return self._message(None, 0, -1)

    def _pos(self, index: int) -> int:
        """The offset of token ``index`` (the end of the text past the last token)."""
        if index < len(self.toks):
            for count, match in enumerate(_TOKEN.finditer(self.text, self.start, self.end)):
                if count == index:
                    return match.start(1)
        return self.end

    def fail(self, detail: str, index: int | None = None) -> GraphError:
        line, col = line_col(self.text, self._pos(self.i if index is None else index))
        return GraphError(f"{self.where}:{line}:{col}: {detail} ({_FIX})")

    def _peek(self, expected: str) -> str:
        if self.i >= len(self.toks):
            raise self.fail(f"unexpected end of text, {expected} expected")
        return self.toks[self.i]

    def _message(self, closer: str | None, depth: int, opened: int) -> Message:
        """Fields up to ``closer`` (``None``: the end); ``opened`` is the opening token's index."""
        if depth > _MAX_DEPTH:
            raise self.fail("messages are nested too deeply")
        toks = self.toks
        msg: Message = {}
        while True:
            if self.i >= len(toks):
                if closer is None:
                    return msg
                line, col = line_col(self.text, self._pos(opened))
                field = next(t for t in reversed(toks[:opened]) if t[0].isalpha() or t[0] == "_")
                raise self.fail(
                    f"unexpected end of text, {closer!r} expected "
                    f"(for the {field!r} block opened at line {line}, column {col})"
                )
            tok = toks[self.i]
            if tok == closer:
                self.i += 1
                return msg
            if not (tok[0].isalpha() or tok[0] == "_"):
                raise self.fail(f"field name expected, found {_show(tok)}")
            self.i += 1
            self._field(msg, tok, depth)
            if self.i < len(toks) and toks[self.i] in (",", ";"):
                self.i += 1

    def _field(self, msg: Message, name: str, depth: int) -> None:
        tok = self._peek(f"':' or '{{' after {name!r}")
        colon = tok == ":"
        if colon:
            self.i += 1
            tok = self._peek(f"a value for {name!r}")
        values = msg.setdefault(name, [])
        if tok in ("{", "<"):
            self.i += 1
            values.append(self._message("}" if tok == "{" else ">", depth + 1, self.i - 1))
        elif colon and tok == "[":
            self.i += 1
            if self._peek("']'") == "]":
                self.i += 1
                return
            while True:
                tok = self._peek(f"a value for {name!r}")
                if tok in ("{", "<"):
                    self.i += 1
                    values.append(self._message("}" if tok == "{" else ">", depth + 1, self.i - 1))
                else:
                    values.append(self._scalar(name))
                tok = self._peek("',' or ']'")
                if tok == "]":
                    self.i += 1
                    return
                if tok != ",":
                    raise self.fail(f"',' or ']' expected, found {_show(tok)}")
                self.i += 1
        elif colon:
            values.append(self._scalar(name))
        else:
            raise self.fail(f"':' or '{{' expected after {name!r}, found {_show(tok)}")

    def _scalar(self, name: str) -> bytes | str:
        toks = self.toks
        tok = toks[self.i]
        if tok[0] in "\"'":
            pieces = []
            while self.i < len(toks) and toks[self.i][0] in "\"'":
                tok = toks[self.i]
                if len(tok) < 2 or tok[-1] != tok[0]:
                    raise self.fail("string not terminated on its line")
                try:
                    pieces.append(unescape(tok[1:-1]))
                except ValueError as err:
                    raise self.fail(f"bad string: {err}") from None
                self.i += 1
            return b"".join(pieces)
        if tok[0].isalnum() or tok[0] in "-+._":
            self.i += 1
            return tok
        raise self.fail(f"a value for {name!r} expected, found {_show(tok)}")


# A comment or a string literal that holds a backslash (strings without one are
# matched too, and skipped, so quotes inside them and in comments do not confuse).
_ESCAPED_STRING = re.compile(
    r"""\#[^\n]*|"[^"\\\n]*(?:\\.[^"\\\n]*)*"|'[^'\\\n]*(?:\\.[^'\\\n]*)*'"""
)


def check_escapes(text: str, where: str) -> None:
    """Refuse the text if a string literal holds an escape protobuf's text format lacks.

    protobuf's Python parser keeps an unknown escape such as ``\\y`` as it is
    (with a warning); the format, and this module's parser, refuse it. Call this
    before handing a text to ``text_format`` so both readers refuse the same files.

    Raises:
        GraphError: naming ``where:line:column`` of the bad string.
    """
    if "\\" not in text:
        return
    for match in _ESCAPED_STRING.finditer(text):
        token = match[0]
        if token[0] == "#" or "\\" not in token:
            continue
        try:
            unescape(token[1:-1])
        except ValueError as err:
            line, col = line_col(text, match.start())
            raise GraphError(f"{where}:{line}:{col}: bad string: {err} ({_FIX})") from None


def parse_text(text: str, where: str, start: int = 0, end: int | None = None) -> Message:
    """Parse ``text[start:end]`` as one text-format message, into plain dicts.

    Each field maps to the list of its values in order: ``bytes`` for strings,
    ``str`` for other scalars (numbers, enums, booleans) as written, and dicts
    for messages.

    Raises:
        GraphError: on a syntax error, with ``where:line:column``.
    """
    return _Parser(text, start, len(text) if end is None else end, where).parse()


# ---------------------------------------------------------------------------
# From parsed messages to facts
# ---------------------------------------------------------------------------


def _last(msg: Message, name: str) -> Value | None:
    values = msg.get(name)
    return values[-1] if values else None


def _sub(msg: Message, name: str) -> Message:
    value = _last(msg, name)
    return value if isinstance(value, dict) else {}


class _BadValue(Exception):
    """A field has a value of the wrong kind; the caller adds where it is."""


def _text(msg: Message, name: str) -> str:
    value = _last(msg, name)
    if value is None:
        return ""
    if not isinstance(value, bytes):
        raise _BadValue(f"field {name!r} must be a string, not {_describe(value)}")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadValue(f"field {name!r} is not valid UTF-8") from None


def _describe(value: Value) -> str:
    if isinstance(value, dict):
        return "a message"
    return _show(value) if isinstance(value, str) else repr(value[:40])


def _int(value: Value) -> int:
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            if _OCTAL.fullmatch(value):
                return int(value, 8)
    raise _BadValue(f"{_describe(value)} is not an integer")


def _bool(value: Value | None) -> bool:
    if value is None:
        return False
    if isinstance(value, str) and value in _TRUE:
        return True
    if isinstance(value, str) and value in _FALSE:
        return False
    raise _BadValue(f"{_describe(value)} is not a boolean")


def _enum(value: Value) -> int:
    if isinstance(value, str):
        if value[0].isalpha() or value[0] == "_":
            try:
                return int(ckptmap_tf_pb2.DataType.Value(value))
            except ValueError:
                raise _BadValue(f"unknown DataType {_show(value)}") from None
        number = _int(value)
        if not 0 <= number < 2**31:  # an enum is an int32; DataType has no negative values
            raise _BadValue(f"{_show(value)} is not a DataType")
        return number
    raise _BadValue(f"{_describe(value)} is not a DataType")


def _shape(msg: Message) -> tuple[int, ...] | None:
    if _bool(_last(msg, "unknown_rank")):
        return None
    dims = []
    for dim in msg.get("dim", []):
        if not isinstance(dim, dict):
            raise _BadValue("a shape dim must be a message")
        size = _last(dim, "size")
        dims.append(0 if size is None else _int(size))
    return tuple(dims)


def node_from_message(msg: Message, where: str | Location) -> GraphNode:
    """The :class:`GraphNode` facts of a parsed ``node { ... }`` block.

    Mirrors :func:`ckptmap.readers._graphdef.node_from_proto`, so both readers
    agree on every graph.

    Raises:
        GraphError: if a field the graph logic reads has a value of the wrong kind.
    """
    name = "?"
    try:
        name = _text(msg, "name")
        op = _text(msg, "op")
        inputs = _inputs(msg)
        attrs = _attrs(msg)
    except _BadValue as err:
        raise GraphError(f"{where}: node {name!r}: {err} ({_FIX})") from None
    return node_from_attrs(name, op, inputs, attrs, where)


def _inputs(msg: Message) -> tuple[str, ...]:
    inputs = []
    for value in msg.get("input", []):
        if not isinstance(value, bytes):
            raise _BadValue(f"an input must be a string, not {_describe(value)}")
        inputs.append(value.decode("utf-8", "surrogateescape"))
    return tuple(inputs)


def _attrs(msg: Message) -> dict[str, Message]:
    attrs: dict[str, Message] = {}
    for entry in msg.get("attr", []):
        if not isinstance(entry, dict):
            raise _BadValue("an attr must be a message")
        attrs[_text(entry, "key")] = _sub(entry, "value")
    return attrs


def node_from_attrs(
    name: str,
    op: str,
    inputs: tuple[str, ...],
    attrs: Mapping[str, Message],
    where: str | Location,
) -> GraphNode:
    """A :class:`GraphNode` from a node's name, op, inputs and parsed ``attr`` values.

    Only the attrs ``dtype``, ``shape``, ``dtypes`` and (for ``Const``) ``value``
    are read, so a caller may pass just those.

    Raises:
        GraphError: if one of those attrs has a value of the wrong kind.
    """
    try:
        return _node_from_attrs(name, op, inputs, attrs)
    except _BadValue as err:
        raise GraphError(f"{where}: node {name!r}: {err} ({_FIX})") from None


def _node_from_attrs(
    name: str, op: str, inputs: tuple[str, ...], attrs: Mapping[str, Message]
) -> GraphNode:
    dtype_value = _last(attrs.get("dtype", {}), "type")
    dtype = 0 if dtype_value is None else _enum(dtype_value)
    shape = None
    if "shape" in attrs.get("shape", {}):
        shape = _shape(_sub(attrs["shape"], "shape"))
    dtypes = tuple(_enum(v) for v in _sub(attrs.get("dtypes", {}), "list").get("type", []))
    strings = None
    string_shape = None
    if op == "Const" and "tensor" in attrs.get("value", {}):
        tensor = _sub(attrs["value"], "tensor")
        tensor_dtype = _last(tensor, "dtype")
        if tensor_dtype is not None and _enum(tensor_dtype) == _DT_STRING:
            string_shape = _shape(_sub(tensor, "tensor_shape"))
            values = []
            for value in tensor.get("string_val", []):
                if not isinstance(value, bytes):
                    raise _BadValue(f"a string_val must be a string, not {_describe(value)}")
                values.append(value)
            strings = tuple(values)
    return GraphNode(
        name=name,
        op=op,
        inputs=inputs,
        dtype=dtype,
        shape=shape,
        dtypes=dtypes,
        strings=strings,
        string_shape=string_shape,
    )


# ---------------------------------------------------------------------------
# The graph
# ---------------------------------------------------------------------------


class GraphText:
    """A :class:`~ckptmap.readers._graphdef.NodeSource` over the text of a GraphDef.

    Attributes:
        where: the file name, for messages.
        top_fields: the names of the top-level fields other than ``node``
            (``versions``, ``library``; ``graph_def`` means a MetaGraphDef).
    """

    def __init__(self, text: str, where: str) -> None:
        self.where = where
        self.top_fields: set[str] = set()
        if "\r\n" in text:  # CRLF line ends: same lines and columns once the CRs are gone
            text = text.replace("\r\n", "\n")
        self._text = text
        self._ops: dict[str, str] = {}
        self._spans: dict[str, tuple[int, int]] = {}
        self._parsed: dict[str, Message] = {}
        try:
            self._scan_standard()
        except _Fallback:
            self.top_fields = set()
            self._ops = {}
            self._spans = {}
            self._parsed = {}
            self._add_fields(parse_text(text, where))

    # -- NodeSource --------------------------------------------------------

    def ops(self) -> Mapping[str, str]:
        return self._ops

    def node(self, name: str) -> GraphNode:
        msg = self._parsed.get(name)
        if msg is not None:
            return node_from_message(msg, self.where)
        start, end = self._spans[name]
        text = self._text
        attrs: dict[str, Message] = {}
        for key in _READ_ATTRS:
            # The last entry of a key wins, as in a protobuf map.
            pos = text.rfind(f'\n  attr {{\n    key: "{key}"\n', start, end)
            if pos >= 0:
                attrs[key] = self._attr_value(pos + 1, end)
        return node_from_attrs(
            name, self._ops[name], self.inputs(name), attrs, Location(self.where, text, start)
        )

    def _attr_value(self, start: int, end: int) -> Message:
        """The ``value`` of the attr entry that starts at ``start`` (standard layout)."""
        text = self._text
        close = text.find(_ATTR_END, start, end + 1)
        if close < 0:
            raise GraphError(f"{Location(self.where, text, start)}: unterminated attr ({_FIX})")
        close += len(_ATTR_END)
        fast = _DTYPE_ATTR.fullmatch(text, start, close)
        if fast is not None:
            return {"type": [fast.group(1)]}
        fast = _SHAPE_ATTR.fullmatch(text, start, close)
        if fast is not None:
            dims: list[Value] = [
                {"size": [size]} if size else {}
                for size in _DIM.findall(text, fast.start(1), fast.end(1))
            ]
            return {"shape": [{"dim": dims}]}
        entry = parse_text(text, self.where, start, close)
        values = entry.get("attr", [])
        if len(entry) != 1 or len(values) != 1 or not isinstance(values[0], dict):
            raise GraphError(f"{Location(self.where, text, start)}: malformed attr ({_FIX})")
        return _sub(values[0], "value")

    def inputs(self, name: str) -> tuple[str, ...]:
        if name in self._parsed:
            return self.node(name).inputs
        start, end = self._spans[name]
        inputs = []
        for raw in _INPUT_LINE.findall(self._text, start, end):
            if "\\" in raw:
                try:
                    inputs.append(unescape(raw).decode("utf-8", "surrogateescape"))
                except ValueError as err:
                    line = next(
                        m for m in _INPUT_LINE.finditer(self._text, start, end) if m[1] == raw
                    )
                    at = Location(self.where, self._text, line.start(1) - 1)  # the quote
                    raise GraphError(
                        f"{at}: node {name!r}: bad input string: {err} ({_FIX})"
                    ) from None
            else:
                inputs.append(raw)
        return tuple(inputs)

    # -- scanning ----------------------------------------------------------

    def _add_node(
        self, name: str, op: str, span: tuple[int, int] | None, msg: Message | None
    ) -> None:
        if name in self._ops:
            raise GraphError(f"{self.where}: two nodes are named {name!r} (the graph is invalid)")
        self._ops[name] = op
        if span is not None:
            self._spans[name] = span
        if msg is not None:
            self._parsed[name] = msg

    def _add_fields(self, msg: Message) -> None:
        for field, values in msg.items():
            if field != "node":
                self.top_fields.add(field)
                continue
            for value in values:
                if not isinstance(value, dict):
                    raise GraphError(f"{self.where}: a node must be a message ({_FIX})")
                try:
                    name, op = _text(value, "name"), _text(value, "op")
                except _BadValue as err:
                    raise GraphError(f"{self.where}: {err} ({_FIX})") from None
                self._add_node(name, op, None, value)

    def _scan_standard(self) -> None:
        """Split the text at its top-level closing braces and read each block's head."""
        text = self._text
        if not text.endswith("\n"):
            text += "\n"  # offsets of earlier characters are unchanged
        pieces = text.split(_BLOCK_END)
        if len(pieces) < 2:
            raise _Fallback
        ops, spans = self._ops, self._spans
        head, op_line = len(_NODE_HEAD), len(_OP_LINE)
        offset = 0
        for piece in pieces[:-1]:
            start = offset
            end = start + len(piece) + 2  # through the closing brace
            offset = end + 1
            # The common case, in C string operations only:
            # 'node {\n  name: "NAME"\n  op: "OP"\n ...' with no escapes in NAME or OP.
            if piece.startswith(_NODE_HEAD):
                quote = piece.find('"', head)
                op_end = piece.find('"', quote + op_line)
                if quote > 0 and op_end > 0 and piece.startswith(_OP_LINE, quote):
                    name = piece[head:quote]
                    op = piece[quote + op_line : op_end]
                    if (
                        piece.startswith('"\n', op_end)
                        and "\\" not in name
                        and "\\" not in op
                        and name not in ops
                    ):
                        ops[name] = op
                        spans[name] = (start, end)
                        continue
            self._scan_block(text, piece, start, end)
        if pieces[-1].strip():
            self._scan_piece(text, offset, len(self._text))

    def _scan_block(self, text: str, piece: str, start: int, end: int) -> None:
        """A top-level block that is not a plain node head: escapes, other fields, odd layout."""
        head = _NODE_HEAD_RE.match(piece)
        if head is not None:
            try:
                name = unescape(head.group(1)).decode("utf-8", "surrogateescape")
                op = unescape(head.group(2)).decode("utf-8", "surrogateescape")
            except ValueError:
                raise _Fallback from None
            self._add_node(name, op, (start, end), None)
            return
        block = _BLOCK_START.match(piece)
        if block is not None and block.group(1) != "node":
            self.top_fields.add(block.group(1))  # versions, library: not read
            return
        self._scan_piece(text, start, end)

    def _scan_piece(self, text: str, start: int, end: int) -> None:
        """Parse a block that is not in the standard layout; any error means: parse it all."""
        try:
            msg = parse_text(text, self.where, start, min(end, len(self._text)))
        except GraphError:
            raise _Fallback from None
        self._add_fields(msg)
