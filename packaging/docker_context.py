"""The Docker build context of a directory: what `docker build` sends, after `.dockerignore`.

scripts/build-binary replays Dockerfile.sidecar's COPY lines without Docker. Copying from the
work tree would let a COPY of an ignored path succeed here and fail under `docker build` ("not
found"), so the replay copies from the context this module makes instead.

The rules are Docker's (BuildKit's dockerignore reader and moby/patternmatcher), ported rather
than approximated, because a near miss is exactly the bug this exists to catch:

* a line starting with `#` is a comment; lines are trimmed; empty lines are skipped;
* `!` makes a line a re-include; each pattern is cleaned like Go's `filepath.Clean`
  (`/foo/bar/` is `foo/bar`);
* `*` and `?` never match `/`; `**` matches any number of directories, zero included;
  `[...]` is a character class; `\\` escapes the next character;
* a pattern that matches a parent directory matches everything below it;
* the last matching line wins.

Docker always keeps the Dockerfile and `.dockerignore` in the context it sends but never lets
COPY take them when they are ignored; here they are simply left out when ignored.

Usage: python3 packaging/docker_context.py SOURCE_DIR DEST_DIR   (copies the context)
       python3 packaging/docker_context.py --list SOURCE_DIR     (prints its files)
Standard library only: it runs on the host before any virtual environment exists.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
import shutil
import sys
from collections.abc import Iterable, Iterator

# Regex metacharacters that mean nothing in a Go filepath.Match pattern: matched literally.
_LITERAL_METACHARACTERS = set(".+()|{}$")


class PatternError(ValueError):
    """A .dockerignore line Docker would reject (`docker build` fails with it too)."""


def go_clean(path: str) -> str:
    """Go's filepath.Clean for slash paths: `posixpath.normpath` but `//x` is `/x` too."""
    cleaned = posixpath.normpath(path) if path else "."
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


@dataclasses.dataclass(frozen=True)
class Pattern:
    """One cleaned .dockerignore pattern; `exclusion` is a `!` re-include."""

    text: str
    exclusion: bool
    kind: str  # "exact", "prefix", "suffix" or "regexp": moby's shortcut match types
    regexp: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regexp is not None
        return self.regexp.match(path) is not None


def _check_syntax(pattern: str) -> None:
    """Reject what Go's filepath.Match rejects: an unclosed class, a trailing escape."""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= len(pattern):
                raise PatternError(f"bad pattern {pattern!r}: trailing backslash")
            i += 2
            continue
        if ch == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] == "^":
                j += 1
            if j < len(pattern) and pattern[j] in "]-":
                raise PatternError(f"bad pattern {pattern!r}: empty or open range in a class")
            while j < len(pattern) and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            if j >= len(pattern):
                raise PatternError(f"bad pattern {pattern!r}: unclosed [")
            i = j + 1
            continue
        i += 1


def compile_pattern(line: str) -> Pattern:
    """One pattern (already trimmed, `!` still on) as moby/patternmatcher compiles it."""
    text = go_clean(line)
    exclusion = text.startswith("!")
    if exclusion:
        if text == "!":
            raise PatternError('illegal exclusion pattern: "!"')
        text = text[1:]
    _check_syntax(text)
    regex, kind, i = "^", "exact", 0
    first = True
    while i < len(text):
        ch = text[i]
        i += 1
        if ch == "*":
            if i < len(text) and text[i] == "*":
                i += 1
                if i < len(text) and text[i] == "/":  # `**/` is `**`
                    i += 1
                if i >= len(text):  # `**` at the end accepts everything below
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        regex += ".*"
                        kind = "regexp"
                else:
                    regex += "(.*/)?"
                    kind = "regexp"
                if first:
                    kind = "suffix"
            else:
                regex += "[^/]*"
                kind = "regexp"
        elif ch == "?":
            regex += "[^/]"
            kind = "regexp"
        elif ch in _LITERAL_METACHARACTERS:
            regex += "\\" + ch
        elif ch == "\\":
            if i < len(text):
                regex += "\\" + text[i]
                i += 1
                kind = "regexp"
            else:
                regex += "\\\\"
        elif ch in "[]":
            regex += ch
            kind = "regexp"
        else:
            regex += ch
        first = False
    compiled = None
    if kind == "regexp":
        try:
            compiled = re.compile(regex + r"\Z", re.DOTALL)
        except re.error as exc:
            raise PatternError(f"bad pattern {line!r}: {exc}") from exc
    return Pattern(text, exclusion, kind, compiled)


def read_patterns(dockerignore_text: str) -> list[Pattern]:
    """The patterns of a .dockerignore file, in order (BuildKit's reader, then moby's New)."""
    patterns = []
    for raw in dockerignore_text.splitlines():
        if raw.startswith("#"):
            continue
        line = raw.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append(compile_pattern(("!" if invert else "") + line))
    return patterns


def is_ignored(path: str, patterns: Iterable[Pattern]) -> bool:
    """Whether `path` (slash-separated, relative to the context) is left out of the context.

    moby's MatchesOrParentMatches: a pattern counts when it matches the path or one of its
    parent directories; the last pattern that counts wins.
    """
    path = go_clean(path)
    if path == ".":
        return False
    parent = posixpath.dirname(path) or "."
    parents = parent.split("/")
    ignored = False
    for pattern in patterns:
        # An include cannot change an ignored path, nor a re-include a kept one.
        if pattern.exclusion != ignored:
            continue
        hit = pattern.match(path)
        if not hit and parent != ".":
            hit = any(pattern.match("/".join(parents[: i + 1])) for i in range(len(parents)))
        if hit:
            ignored = not pattern.exclusion
    return ignored


def context_files(source: str, patterns: list[Pattern]) -> Iterator[str]:
    """Relative paths of the files (and symlinks) in the context, sorted, walking like BuildKit.

    An ignored directory is still entered when some `!` pattern might re-include something
    below it; otherwise its whole subtree is skipped (a `.venv` is never walked).
    """
    reincludes = [p.text.split("/") for p in patterns if p.exclusion]

    def may_reinclude_below(path: str) -> bool:
        parts = path.split("/")
        for dirs in reincludes:
            if any("**" in d for d in dirs[: len(parts)]):
                return True
            if len(dirs) > len(parts) and all(
                compile_pattern(d).match(part) for d, part in zip(dirs, parts, strict=False)
            ):
                return True
        return False

    def walk(rel: str) -> Iterator[str]:
        directory = os.path.join(source, rel) if rel else source
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            path = f"{rel}/{entry.name}" if rel else entry.name
            ignored = is_ignored(path, patterns)
            if entry.is_dir(follow_symlinks=False):
                if not ignored or may_reinclude_below(path):
                    yield from walk(path)
            elif not ignored:
                yield path

    yield from walk("")


def load_patterns(source: str) -> list[Pattern]:
    """The patterns of `source`/.dockerignore (none when there is no such file)."""
    ignore_file = os.path.join(source, ".dockerignore")
    if not os.path.exists(ignore_file):
        return []
    with open(ignore_file, encoding="utf-8") as handle:
        return read_patterns(handle.read())


def copy_context(source: str, dest: str) -> int:
    """Copy the build context of `source` into the empty or new directory `dest`."""
    count = 0
    for rel in context_files(source, load_patterns(source)):
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(source, rel), target, follow_symlinks=False)
        count += 1
    return count


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--list":
        for rel in context_files(argv[1], load_patterns(argv[1])):
            print(rel)
        return 0
    if len(argv) == 2:
        count = copy_context(argv[0], argv[1])
        print(f"build context: {count} files from {argv[0]} (after .dockerignore)")
        return 0
    print(__doc__.split("Usage:")[1].split("Standard")[0].strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except PatternError as exc:
        print(f".dockerignore: {exc}", file=sys.stderr)
        sys.exit(2)
