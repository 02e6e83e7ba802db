"""The GameServer manifest file from disk to a document, within bounds; never a hang.

`read_document(path)` returns the decoded document (any type; manifest.py judges its shape) or
raises ValueError saying what is wrong, which config.py turns into exit 2 naming the variable.
The file must be a regular file (a symlink to one is fine: Kubernetes mounts ConfigMaps that
way) holding 1 byte to 1 MiB of UTF-8; `sidecar.regular_file` reads it (stat() before the
open, fstat() after a non-blocking one), so a FIFO or a device is refused, never waited on.

JSON (text starting with `{`, as Kubernetes' decoder tells them apart) goes through
`bounded_json`. YAML goes through PyYAML's safe loader, fed by a parser whose events are
counted before the composer, which recurses once per level, sees them: nesting deeper than 64
levels stops the read. Aliases (`*name`) are counted as what they stand for, so a chain of
anchors cannot nest deeper than the text shows, and the document they expand to is capped at
MAX_NODES values (a "billion laughs" file is refused, not expanded); an alias inside the node it
names (a recursive document) is refused too. YAML forbids most control characters (NUL, ESC,
BEL, U+FFFE...) even inside quotes, and a double-quoted escape can spell a lone UTF-16 surrogate
(`"\\ud800"`), which is not text and could never be written out as UTF-8: both are refused with
their line and column before anything reads the document. The file is one document (a second
non-empty YAML document is refused) and no mapping or object gives a key twice: decoders keep
the last silently, which is never what was meant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sidecar.bounded_json import MAX_DEPTH, SURROGATE, read_json
from sidecar.regular_file import read_regular_file

MAX_FILE_BYTES = 1024 * 1024  # Kubernetes refuses objects over 1.5 MiB; a GameServer is far less
# Values of the document once every alias is replaced by what it names. A 1 MiB file holds at
# most about 350,000 (`- a` per line); ten times less than the expansion that would hurt.
MAX_NODES = 1_000_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


def read_document(path: str) -> Any:
    """The document of the manifest at `path`; ValueError says why it cannot be used."""
    text = _read_text(path)
    if text.lstrip().startswith("{"):
        read = read_json(text, max_bytes=MAX_FILE_BYTES, max_depth=MAX_DEPTH)
        if read.problem is not None:
            raise ValueError(f"{path} {read.problem}")
        _no_duplicate_keys(path, text)
        return read.value
    return _yaml(path, text)


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _no_duplicate_keys(path: str, text: str) -> None:
    """A key given twice in one object: JSON decoders keep the last, silently, where the
    developer most likely meant both (Kubernetes' strict decoding refuses it too). Checked on
    text read_json has already bounded and decoded, so nothing but the hook can raise."""
    try:
        json.loads(text, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as exc:
        raise ValueError(f"{path} has the key {str(exc)[:60]!r} twice in one object") from None


def _read_text(path: str) -> str:
    raw = read_regular_file(path, MAX_FILE_BYTES)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None


class _Unusable(ValueError):
    """The YAML document is beyond the bounds; raised from inside the loader."""


@dataclass
class _Collection:
    """A mapping or sequence the parser has opened and not yet closed."""

    anchor: str | None
    deepest: int  # the deepest level reached inside it, aliases expanded
    nodes: int = 1  # values inside it, itself included, aliases expanded


@dataclass
class _Shape:
    """Depth and size of the document being parsed, as its aliases expand. Levels count from 1
    for the outermost collection; a scalar adds none, as in bounded_json's count for JSON."""

    open: list[_Collection] = field(default_factory=list)
    heights: dict[str, int] = field(default_factory=dict)  # anchor -> levels it adds
    sizes: dict[str, int] = field(default_factory=dict)  # anchor -> values it stands for
    nodes: int = 0

    def start(self, anchor: str | None) -> None:
        level = len(self.open) + 1
        if level > MAX_DEPTH:
            raise _Unusable(f"nests mappings/sequences deeper than {MAX_DEPTH} levels")
        self._count(1)
        if anchor is not None:  # a name defined again: until this one closes, it is open
            self.heights.pop(anchor, None)
            self.sizes.pop(anchor, None)
        self.open.append(_Collection(anchor, deepest=level))

    def end(self) -> None:
        closed = self.open.pop()
        if closed.anchor is not None:
            self.heights[closed.anchor] = closed.deepest - len(self.open)
            self.sizes[closed.anchor] = closed.nodes
        if self.open:
            parent = self.open[-1]
            parent.deepest = max(parent.deepest, closed.deepest)
            parent.nodes += closed.nodes

    def scalar(self, anchor: str | None) -> None:
        self._count(1)
        if self.open:
            self.open[-1].nodes += 1
        if anchor is not None:
            self.heights[anchor] = 0
            self.sizes[anchor] = 1

    def alias(self, anchor: str) -> None:
        if anchor not in self.sizes and any(item.anchor == anchor for item in self.open):
            raise _Unusable(f"has an alias (*{anchor[:40]}) inside the node it names")
        # An undefined alias counts as one value: the composer then refuses it by name.
        size = self.sizes.get(anchor, 1)
        self._count(size)
        if self.open:
            reached = len(self.open) + self.heights.get(anchor, 0)
            if reached > MAX_DEPTH:
                raise _Unusable(
                    f"nests mappings/sequences deeper than {MAX_DEPTH} levels "
                    f"once alias *{anchor[:40]} is expanded"
                )
            current = self.open[-1]
            current.deepest = max(current.deepest, reached)
            current.nodes += size

    def _count(self, nodes: int) -> None:
        self.nodes += nodes
        if self.nodes > MAX_NODES:
            raise _Unusable(f"expands to more than {MAX_NODES:,} values through its aliases")


@cache
def _bounded_loader() -> Any:
    """PyYAML's SafeLoader with every event measured on its way to the composer. Built on first
    use: PyYAML is imported only for a YAML manifest."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.shape = _Shape()

        def get_event(self) -> Any:
            event = super().get_event()
            if isinstance(event, yaml.ScalarEvent):
                if SURROGATE.search(event.value):  # keys and values: every scalar is one
                    event.value = _join_surrogate_pairs(event.value)
                if SURROGATE.search(event.value):
                    raise _Unusable(
                        "holds a lone UTF-16 surrogate escape (such as \\ud800), which is not "
                        f"text{_where(event.start_mark)}"
                    )
                self.shape.scalar(event.anchor)
            elif isinstance(event, yaml.CollectionStartEvent):
                self.shape.start(event.anchor)
            elif isinstance(event, yaml.CollectionEndEvent):
                self.shape.end()
            elif isinstance(event, yaml.AliasEvent):
                self.shape.alias(event.anchor)
            return event

        def compose_mapping_node(self, anchor: Any) -> Any:
            """A key given twice in one mapping: PyYAML keeps the last, silently. Keys are
            compared as written and typed (`1` and `"1"` differ); merge keys (`<<`) are not
            keys."""
            node = super().compose_mapping_node(anchor)
            seen: set[tuple[str, str]] = set()
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                    if (key.tag, key.value) in seen:
                        raise _Unusable(
                            f"has the key {key.value[:60]!r} twice in one mapping"
                            f"{_where(key.start_mark)}"
                        )
                    seen.add((key.tag, key.value))
            return node

    return BoundedLoader


def _yaml(path: str, text: str) -> Any:
    import yaml  # only for a YAML manifest (see the README's design notes)

    try:
        # The reader refuses characters YAML does not allow as it is built.
        loader = _bounded_loader()(text)
    except yaml.reader.ReaderError as exc:
        raise ValueError(f"{path} is not valid YAML: {_reader_problem(text, exc)}") from None
    try:
        # One GameServer: empty documents (a stray `---`) are skipped, a second one is refused
        # rather than silently dropped.
        document = None
        while loader.check_data():
            data = loader.get_data()
            if data is None:
                continue
            if document is not None:
                raise _Unusable(
                    "holds more than one YAML document (separated by ---): "
                    "the manifest is one GameServer, Fleet or GameServerSet"
                )
            document = data
        return document
    except _Unusable as exc:
        raise ValueError(f"{path} {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
    except ValueError as exc:  # an integer beyond the int/str conversion limit
        raise ValueError(f"{path} is not usable YAML: {str(exc).split(':')[0]}") from None
    finally:
        loader.dispose()


def _join_surrogate_pairs(text: str) -> str:
    """`"\\ud83d\\ude00"` is one character, as in JSON (PyYAML decodes each escape alone);
    a surrogate without its other half stays as it is."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _reader_problem(text: str, exc: Any) -> str:
    """Which character YAML refused, and where (the file is not quoted)."""
    position = exc.position if isinstance(exc.position, int) else 0
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return (
        f"the character U+{exc.character:04X} (line {line}, column {column}) is not allowed "
        "in YAML, even quoted (control characters other than tab and line breaks, U+FFFE, "
        "U+FFFF); inside double quotes write it as an escape such as \\x1b"
    )


def _where(mark: Any) -> str:
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _yaml_problem(exc: Any) -> str:
    """PyYAML's message without the snippet of the file it quotes: the line and column say
    where, and the file may be something other than a manifest."""
    problem = getattr(exc, "problem", None)
    if problem is None:
        return " ".join(str(exc).split())[:200]
    context = getattr(exc, "context", None)
    where = _where(getattr(exc, "problem_mark", None))
    return f"{context}: {problem}{where}" if context else f"{problem}{where}"
