"""SIDECAR_AGONES_GAMESERVER: seeding from an Agones manifest, and every way a file is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sidecar.agones.counters import Counter, ListState
from sidecar.agones.manifest import HealthSpec
from sidecar.config import load_settings
from sidecar.errors import ConfigError
from tests.agones_client import Agones
from tests.conftest import SidecarFactory, base_env

FLEET_YAML = """\
apiVersion: agones.dev/v1
kind: Fleet
metadata:
  name: arena
spec:
  replicas: 2
  template:
    metadata:
      labels:
        mode: ranked
      annotations:
        team.example.com/owner: "studio a"
    spec:
      ports:
        - name: default
          containerPort: 7654
      health:
        periodSeconds: 4
        failureThreshold: 2
      players:
        initialCapacity: 8
      counters:
        rooms:
          count: 2
          capacity: 5
      lists:
        maps:
          capacity: 3
          values: [dust, nuke]
      template:
        spec:
          containers:
            - name: game
              image: example/game:1.0
"""


def write(tmp_path: Path, name: str, content: Any) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def settings_for(path: str, **extra: str) -> Any:
    return load_settings({"SIDECAR_AGONES": "true", "SIDECAR_AGONES_GAMESERVER": path, **extra})


class TestSeeding:
    async def test_a_fleet_manifest_seeds_the_gameserver(
        self, sidecar: SidecarFactory, tmp_path: Path
    ) -> None:
        """Labels, annotations, spec.health, capacity, counters and lists from a YAML Fleet."""
        path = write(tmp_path, "fleet.yaml", FLEET_YAML)
        handle = await sidecar(
            SIDECAR_AGONES="true", SIDECAR_AGONES_HTTP_PORT="0", SIDECAR_AGONES_GAMESERVER=path
        )
        gameserver = await Agones(handle).gameserver()
        meta = gameserver["object_meta"]
        assert meta["labels"] == {"mode": "ranked"}
        assert meta["annotations"] == {"team.example.com/owner": "studio a"}
        assert gameserver["spec"]["health"] == {
            "disabled": False,
            "period_seconds": 4,
            "failure_threshold": 2,
            "initial_delay_seconds": 5,
        }
        status = gameserver["status"]
        assert status["players"] == {"count": "0", "capacity": "8", "ids": []}
        assert status["counters"] == {"rooms": {"count": "2", "capacity": "5"}}
        assert status["lists"] == {
            "maps": {"capacity": "3", "values": ["dust", "nuke"]},
            "players": {"capacity": "1000", "values": []},
        }
        assert handle.agent.lifecycle.timers.health_timeout == 8

    async def test_status_wins_and_seeds_the_roster(
        self, sidecar: SidecarFactory, tmp_path: Path
    ) -> None:
        """status.* wins over spec.*; the players list's values are the first roster."""
        manifest = {
            "spec": {
                "counters": {"rooms": {"count": 1, "capacity": 2}},
                "players": {"initialCapacity": 4},
            },
            "status": {
                "counters": {"rooms": {"count": 7, "capacity": 9}},
                "lists": {"players": {"capacity": 50, "values": ["a", "b"]}},
                "players": {"capacity": 6, "ids": ["b", "c"]},
                "state": "Ready",
                "unknownField": {"ignored": True},
            },
        }
        path = write(tmp_path, "gs.json", manifest)
        handle = await sidecar(
            SIDECAR_AGONES="true", SIDECAR_AGONES_HTTP_PORT="0", SIDECAR_AGONES_GAMESERVER=path
        )
        status = (await Agones(handle).gameserver())["status"]
        assert status["counters"]["rooms"] == {"count": "7", "capacity": "9"}
        assert status["players"] == {"count": "3", "capacity": "6", "ids": ["a", "b", "c"]}
        assert status["lists"]["players"] == {"capacity": "50", "values": ["a", "b", "c"]}
        assert (await handle.call("GET", "/v1/players"))[1] == {"count": 3, "ids": ["a", "b", "c"]}

    def test_spec_health_sets_the_health_timeout(self, tmp_path: Path) -> None:
        """period x threshold becomes the health timeout; `disabled` turns it off."""
        path = write(tmp_path, "gs.json", {"spec": {"health": {"periodSeconds": 3}}})
        assert settings_for(path).health_timeout == 9  # 3 x Agones' default threshold of 3
        off = write(tmp_path, "off.json", {"spec": {"health": {"disabled": True}}})
        assert settings_for(off).health_timeout == 0

    def test_an_explicit_health_timeout_wins(self, tmp_path: Path) -> None:
        """SIDECAR_HEALTH_TIMEOUT set explicitly overrides spec.health (and its initial delay)."""
        path = write(tmp_path, "gs.json", {"spec": {"health": {"periodSeconds": 3}}})
        settings = settings_for(path, SIDECAR_HEALTH_TIMEOUT="45s")
        assert settings.health_timeout == 45
        assert settings.agones_gameserver is not None
        assert settings.agones_gameserver.health == HealthSpec(period_seconds=3)
        assert settings.agones_gameserver.health_sets_timer is False

    def test_the_manifest_needs_the_facade_to_matter(self, tmp_path: Path) -> None:
        """With SIDECAR_AGONES off, spec.health leaves the health timeout alone."""
        path = write(tmp_path, "gs.json", {"spec": {"health": {"periodSeconds": 3}}})
        assert load_settings({"SIDECAR_AGONES_GAMESERVER": path}).health_timeout == 30

    def test_json_manifest_read_into_typed_values(self, tmp_path: Path) -> None:
        """A JSON GameServer becomes the typed manifest (counters and lists as values)."""
        manifest = {
            "kind": "GameServer",
            "spec": {"lists": {"maps": {"values": ["x"]}}, "counters": {"c": {}}},
        }
        loaded = settings_for(write(tmp_path, "gs.json", manifest)).agones_gameserver
        assert loaded is not None
        assert loaded.lists == {"maps": ListState(1000, ("x",))}
        assert loaded.counters == {"c": Counter(0, 1000)}
        assert str(loaded).endswith("gs.json")


BAD = [
    pytest.param("[1, 2]", "must be an object", id="not-an-object"),
    pytest.param("{}", "empty", id="empty"),
    pytest.param("{nope", "not valid JSON", id="bad-json"),
    pytest.param("a: [unclosed", "not valid YAML", id="bad-yaml"),
    pytest.param({"metadata": {"labels": {"a b": "x"}}}, "metadata.labels", id="label-key"),
    pytest.param({"metadata": {"labels": {"a": "b c"}}}, "metadata.labels.a", id="label-value"),
    pytest.param({"metadata": {"labels": {"a": 1}}}, "must be a string", id="label-number"),
    pytest.param({"metadata": {"annotations": []}}, "must be an object", id="annotations-list"),
    pytest.param({"spec": {"health": {"disabled": "no"}}}, "true or false", id="health-bool"),
    pytest.param({"spec": {"health": {"periodSeconds": -1}}}, "periodSeconds", id="health-neg"),
    pytest.param({"spec": {"players": {"initialCapacity": "8"}}}, "whole number", id="capacity"),
    pytest.param({"spec": {"counters": {"r": {"count": 3, "capacity": 2}}}}, "above", id="count"),
    pytest.param({"status": {"lists": {"l": {"capacity": 1001}}}}, "0 to 1000", id="list-cap"),
    pytest.param({"spec": {"lists": {"l": {"capacity": 1, "values": ["a", "b"]}}}}, "more than"),
    pytest.param({"spec": {"lists": {"l": {"values": ["a", "a"]}}}}, "twice", id="duplicates"),
    pytest.param({"spec": {"lists": {"l": {"values": [1]}}}}, "list of strings", id="values"),
]


class TestBadManifests:
    @pytest.mark.parametrize(("content", "problem"), BAD)
    def test_refused_naming_the_variable(self, tmp_path: Path, content: Any, problem: str) -> None:
        """A manifest the sidecar cannot use is a ConfigError naming the variable and field."""
        suffix = ".yaml" if isinstance(content, str) and not content.startswith(("{", "[")) else ""
        path = write(tmp_path, f"gs{suffix or '.json'}", content)
        with pytest.raises(ConfigError) as caught:
            settings_for(path)
        message = str(caught.value)
        assert message.startswith("SIDECAR_AGONES_GAMESERVER: ")
        assert problem in message

    def test_seeded_players_follow_the_roster_rule(self, tmp_path: Path) -> None:
        """Ids the roster cannot hold (the players list, status.players.ids) are exit 2 too."""
        long_id = {"status": {"players": {"ids": ["x" * 129]}}}
        with pytest.raises(ConfigError, match="1-128 printable characters"):
            settings_for(write(tmp_path, "a.json", long_id))
        control = {"spec": {"lists": {"players": {"values": ["tab\there"]}}}}
        with pytest.raises(ConfigError, match="list 'players'"):
            settings_for(write(tmp_path, "b.json", control))
        # Another list may hold any string; only the roster's list is held to the rule.
        other = {"spec": {"lists": {"maps": {"values": ["x" * 200]}}}}
        assert settings_for(write(tmp_path, "c.json", other)).agones_gameserver is not None

    def test_seeded_players_fit_the_players_list(self, tmp_path: Path) -> None:
        """The list's values and status.players.ids together are the roster: more of them than
        the players list's capacity (1000 when the manifest does not say) is exit 2."""
        over = {
            "status": {
                "lists": {"players": {"capacity": 2, "values": ["a", "b"]}},
                "players": {"ids": ["c"]},
            }
        }
        with pytest.raises(ConfigError, match=r"3 players .* capacity of the list 'players', 2"):
            settings_for(write(tmp_path, "a.json", over))
        many = {"status": {"players": {"ids": [f"p{n}" for n in range(1001)]}}}
        with pytest.raises(ConfigError, match=r"1001 players .* 'players', 1000"):
            settings_for(write(tmp_path, "b.json", many))
        # Under another list name, the list called `players` is an ordinary list.
        renamed = settings_for(
            write(tmp_path, "c.json", over), SIDECAR_AGONES_PLAYERS_LIST="roster"
        )
        assert renamed.agones_gameserver is not None

    def test_missing_file(self, tmp_path: Path) -> None:
        """A file that cannot be read is named with the reason."""
        with pytest.raises(ConfigError, match=r"cannot read .*nope\.yaml: No such file"):
            settings_for(str(tmp_path / "nope.yaml"))

    def test_exit_2_without_a_traceback(self, tmp_path: Path) -> None:
        """check-config with a bad manifest exits 2 with one line naming the variable."""
        path = write(tmp_path, "gs.json", {"spec": {"counters": {"r": {"count": -1}}}})
        result = subprocess.run(
            [sys.executable, "-m", "sidecar", "check-config"],
            env=base_env(SIDECAR_AGONES="true", SIDECAR_AGONES_GAMESERVER=path),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 2
        assert result.stderr.startswith("edgegap-sidecar: SIDECAR_AGONES_GAMESERVER: ")
        assert "spec.counters.r.count" in result.stderr
        assert "Traceback" not in result.stderr


def nested_yaml(depth: int) -> str:
    """`depth` block mappings, each indented one space more than the one holding it."""
    lines = [f"{' ' * level}k{level}:" for level in range(depth - 1)]
    return "kind: GameServer\n" + "\n".join(lines) + f"\n{' ' * (depth - 1)}leaf: 1\n"


def nested_json(depth: int) -> str:
    """The root object, then `depth - 1` arrays: `depth` levels in all."""
    return '{"kind": "GameServer", "x": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


class TestHostileFiles:
    def test_a_fifo_is_refused_at_once_in_serve(self, tmp_path: Path) -> None:
        """`serve` with the manifest pointing at a FIFO exits 2 naming the variable, without
        waiting for a writer (start-up hung forever)."""
        fifo = tmp_path / "gameserver.yaml"
        os.mkfifo(fifo)
        result = subprocess.run(
            [sys.executable, "-m", "sidecar", "serve"],
            env=base_env(
                SIDECAR_PORT="0", SIDECAR_AGONES="true", SIDECAR_AGONES_GAMESERVER=str(fifo)
            ),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 2
        assert result.stderr == (
            f"edgegap-sidecar: SIDECAR_AGONES_GAMESERVER: {fifo} is a FIFO (named pipe), "
            "not a regular file\n"
        )

    @pytest.mark.parametrize(
        ("path", "problem"),
        [("/dev/null", "is a device, not a regular file"), (".", "is a directory")],
    )
    def test_not_a_regular_file(self, tmp_path: Path, path: str, problem: str) -> None:
        """A device or a directory is refused before it is read, naming what it is."""
        target = str(tmp_path) if path == "." else path
        with pytest.raises(ConfigError, match=problem):
            settings_for(target)

    def test_a_symlink_to_a_file_is_followed(self, tmp_path: Path) -> None:
        """A symlink to a regular file (how Kubernetes mounts a ConfigMap) is read."""
        target = write(tmp_path, "real.json", {"metadata": {"labels": {"a": "b"}}})
        link = tmp_path / "gameserver.json"
        link.symlink_to(target)
        loaded = settings_for(str(link)).agones_gameserver
        assert loaded is not None
        assert loaded.labels == {"a": "b"}

    def test_an_empty_file(self, tmp_path: Path) -> None:
        """An empty file is refused as empty."""
        with pytest.raises(ConfigError, match=r"gs\.yaml is empty"):
            settings_for(write(tmp_path, "gs.yaml", ""))

    def test_one_mebibyte_and_no_more(self, tmp_path: Path) -> None:
        """A file of exactly 1 MiB is read; one byte more is refused."""
        head = '{"metadata": {"labels": {"a": "b"}}, "padding": "'
        exact = head + "x" * (1024 * 1024 - len(head) - 2) + '"}'
        assert len(exact.encode()) == 1024 * 1024
        loaded = settings_for(write(tmp_path, "exact.json", exact)).agones_gameserver
        assert loaded is not None
        assert loaded.labels == {"a": "b"}
        over = exact[:-2] + 'x"}'
        with pytest.raises(ConfigError, match=r"over\.json is larger than 1 MiB"):
            settings_for(write(tmp_path, "over.json", over))

    def test_json_depth_64_is_read_and_65_refused(self, tmp_path: Path) -> None:
        """A JSON manifest nesting 64 levels is read; 65 is refused naming the limit."""
        assert settings_for(write(tmp_path, "ok.json", nested_json(64))).agones_gameserver
        with pytest.raises(ConfigError, match="nests deeper than 64 levels"):
            settings_for(write(tmp_path, "deep.json", nested_json(65)))

    def test_yaml_depth_64_is_read_and_65_refused(self, tmp_path: Path) -> None:
        """A YAML manifest nesting 64 block mappings is read; 65 is refused naming the limit."""
        assert settings_for(write(tmp_path, "ok.yaml", nested_yaml(64))).agones_gameserver
        with pytest.raises(ConfigError, match="deeper than 64 levels"):
            settings_for(write(tmp_path, "deep.yaml", nested_yaml(65)))

    @pytest.mark.parametrize(
        ("name", "content"),
        [
            ("deep.json", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"),
            ("deep.yaml", "a: " + "[" * 50_000 + "]" * 50_000 + "\n"),
            ("deep-block.yaml", nested_yaml(1000)),
        ],
    )
    def test_deep_manifests_exit_2(self, tmp_path: Path, name: str, content: str) -> None:
        """JSON or YAML nested 1000 to 100k deep is exit 2 naming the variable, not the
        RecursionError of a recursive decoder (exit 1, a traceback)."""
        path = write(tmp_path, name, content)
        result = subprocess.run(
            [sys.executable, "-m", "sidecar", "check-config"],
            env=base_env(SIDECAR_AGONES="true", SIDECAR_AGONES_GAMESERVER=path),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr[-500:]
        assert result.stderr.startswith(f"edgegap-sidecar: SIDECAR_AGONES_GAMESERVER: {path} ")
        assert "deeper than 64 levels" in result.stderr
        assert "Traceback" not in result.stderr

    def test_a_billion_laughs_is_refused(self, tmp_path: Path) -> None:
        """Aliases that would expand to 10^9 values are refused, not expanded."""
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
        lines.append("metadata: {labels: {a: b}}")
        with pytest.raises(ConfigError, match="expands to more than 1,000,000 values"):
            settings_for(write(tmp_path, "laughs.yaml", "\n".join(lines) + "\n"))

    def test_aliases_count_as_what_they_name(self, tmp_path: Path) -> None:
        """Ordinary anchors and aliases work; a chain of them nesting beyond 64 levels once
        expanded is refused, and so is an alias inside the node it names."""
        shared = "common: &labels {mode: ranked}\nmetadata:\n  labels: *labels\n"
        loaded = settings_for(write(tmp_path, "ok.yaml", shared)).agones_gameserver
        assert loaded is not None
        assert loaded.labels == {"mode": "ranked"}
        chain = ["a0: &a0 [[[[[[[[[[x]]]]]]]]]]"]
        chain += [f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]" for i in range(1, 8)]
        with pytest.raises(ConfigError, match="deeper than 64 levels once alias"):
            settings_for(write(tmp_path, "chain.yaml", "\n".join(chain) + "\n"))
        with pytest.raises(ConfigError, match=r"alias \(\*a\) inside the node it names"):
            settings_for(write(tmp_path, "loop.yaml", "a: &a [*a]\n"))

    def test_yaml_errors_say_where_without_quoting(self, tmp_path: Path) -> None:
        """A YAML syntax error gives line and column, not a snippet of the file."""
        path = write(tmp_path, "bad.yaml", "metadata:\n  labels: {a: b\nspec: [secret-ish\n")
        with pytest.raises(ConfigError) as caught:
            settings_for(path)
        message = str(caught.value)
        assert "is not valid YAML: " in message
        assert "(line 3, column 5)" in message
        assert "secret-ish" not in message


def exit_of(command: list[str], path: str) -> subprocess.CompletedProcess[str]:
    """`edgegap-sidecar <command>` with the facade on and the manifest at `path`."""
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *command],
        env=base_env(SIDECAR_AGONES="true", SIDECAR_AGONES_GAMESERVER=path, SIDECAR_PORT="0"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestTextThatIsNotText:
    """Strings the GameServer could never be written out with are refused at load (exit 2);
    they used to pass the read and crash later (exit 1, a traceback, the game never started)."""

    @pytest.mark.parametrize(
        ("character", "code"),
        [("\x1b", "001B"), ("\x00", "0000"), ("\x07", "0007"), ("\ufffe", "FFFE")],
    )
    def test_characters_yaml_forbids(self, tmp_path: Path, character: str, code: str) -> None:
        """A control character YAML does not allow is a YAML error with its line and column,
        not PyYAML's ReaderError escaping the loader (raised as the loader is built)."""
        path = write(tmp_path, "gs.yaml", f"metadata:\n  name: {character}[32mgs\n")
        with pytest.raises(ConfigError) as caught:
            settings_for(path)
        message = str(caught.value)
        assert message.startswith("SIDECAR_AGONES_GAMESERVER: ")
        assert f"U+{code} (line 2, column 9) is not allowed in YAML" in message

    @pytest.mark.parametrize(
        "content",
        [
            'status:\n  lists:\n    l: {capacity: 5, values: ["\\ud800"]}\n',
            'spec:\n  counters:\n    "\\udc00": {count: 1}\n',
            'metadata:\n  annotations: {a: "x\\U0000D800"}\n',
        ],
        ids=["list-value", "counter-name", "annotation"],
    )
    def test_a_lone_surrogate_is_exit_2_in_run_and_check_config(
        self, tmp_path: Path, content: str
    ) -> None:
        """A YAML escape spelling half a surrogate pair: check-config and run agree (exit 2
        naming the variable); before, check-config and run crashed with UnicodeEncodeError."""
        path = write(tmp_path, "gs.yaml", content)
        for command in (["check-config"], ["run", "--", "true"]):
            result = exit_of(command, path)
            assert result.returncode == 2, result.stderr[-800:]
            assert result.stderr.startswith(f"edgegap-sidecar: SIDECAR_AGONES_GAMESERVER: {path}")
            assert "lone UTF-16 surrogate" in result.stderr
            assert "Traceback" not in result.stderr

    def test_proc_self_cmdline_is_exit_2(self) -> None:
        """A file full of NULs (here the process's own command line) is refused as YAML."""
        result = exit_of(["run", "--", "true"], "/proc/self/cmdline")
        assert result.returncode == 2, result.stderr[-800:]
        assert "U+0000" in result.stderr
        assert "Traceback" not in result.stderr

    def test_a_surrogate_pair_is_one_character(self, tmp_path: Path) -> None:
        """JSON-style escapes of both halves make one character, as in JSON."""
        path = write(tmp_path, "gs.yaml", 'metadata:\n  annotations: {a: "\\ud83d\\ude00"}\n')
        loaded = settings_for(path).agones_gameserver
        assert loaded is not None
        assert loaded.annotations == {"a": "\N{GRINNING FACE}"}

    def test_a_lone_surrogate_in_json_too(self, tmp_path: Path) -> None:
        """The JSON reader already refused one; the same holds for every form of the file."""
        path = write(tmp_path, "gs.json", '{"status": {"lists": {"l": {"values": ["\\ud800"]}}}}')
        with pytest.raises(ConfigError, match="lone UTF-16 surrogate"):
            settings_for(path)


class TestWhatAGameDeveloperMeant:
    """What YAML and JSON decoders take silently, and a developer did not mean, is exit 2
    naming where; before, each of these was read without a word."""

    @pytest.mark.parametrize(
        ("content", "problem"),
        [
            pytest.param(
                "metadata:\n  labels:\n    mode: ranked\n    mode: casual\n",
                "has the key 'mode' twice in one mapping (line 4, column 5)",
                id="yaml-duplicate-label",
            ),
            pytest.param(
                "spec: {}\nspec: {players: {initialCapacity: 4}}\n",
                "has the key 'spec' twice in one mapping (line 2, column 1)",
                id="yaml-duplicate-top-level",
            ),
            pytest.param(
                '{"metadata": {"labels": {"a": "x"}}, "metadata": {}}',
                "has the key 'metadata' twice in one object",
                id="json-duplicate",
            ),
            pytest.param(
                "kind: GameServer\nmetadata: {labels: {a: b}}\n---\nkind: GameServer\n",
                "holds more than one YAML document",
                id="two-documents",
            ),
            pytest.param(
                "metadata:\n  labels:\n    1: one\n    true: yes\n",
                "metadata.labels has a key that is the number 1, not a string: quote it",
                id="number-label-key",
            ),
            pytest.param(
                "metadata:\n  annotations:\n    null: x\n",
                "metadata.annotations has a key that is null, not a string",
                id="null-annotation-key",
            ),
            pytest.param(
                "spec:\n  counters:\n    true: {count: 1}\n",
                "spec.counters has a key that is a boolean, not a string",
                id="boolean-counter-name",
            ),
            pytest.param(
                "metadata:\n  labels:\n    on: true\n",
                "has a key that is a boolean",
                id="yaml-1.1-boolean-key",
            ),
            pytest.param(
                "metadata:\n  labels:\n    ready: true\n",
                "metadata.labels.ready must be a string, got a boolean (quote it in YAML)",
                id="boolean-label-value",
            ),
            pytest.param(
                "services:\n  game:\n    image: example/game\n",
                "none of apiVersion, kind, metadata, spec, status",
                id="a-compose-file",
            ),
            pytest.param(
                "apiVersion: apps/v1\nkind: Deployment\nspec: {replicas: 1}\n",
                "kind must be GameServer, Fleet, GameServerSet, got the string 'Deployment'",
                id="a-deployment",
            ),
            pytest.param(
                "apiVersion: v1\nmetadata: {name: x}\n",
                "apiVersion must be Agones' (agones.dev/v1), got the string 'v1'",
                id="not-agones-api",
            ),
        ],
    )
    def test_refused(self, tmp_path: Path, content: str, problem: str) -> None:
        suffix = ".json" if content.startswith("{") else ".yaml"
        with pytest.raises(ConfigError) as caught:
            settings_for(write(tmp_path, f"gs{suffix}", content))
        message = str(caught.value)
        assert message.startswith("SIDECAR_AGONES_GAMESERVER: ")
        assert problem in message

    def test_what_stays_allowed(self, tmp_path: Path) -> None:
        """Quoted keys, the same key in different mappings, merge keys (`<<`) overriding what
        they merge, a stray `---` before or after the document: all read as written."""
        content = (
            "---\n"
            "base: &base {mode: ranked, region: eu}\n"
            "metadata:\n"
            "  labels:\n"
            "    <<: *base\n"
            "    region: us\n"
            '    "1": one\n'
            '    "true": "yes"\n'
            "  annotations: {mode: x}\n"
            "---\n"
        )
        loaded = settings_for(write(tmp_path, "gs.yaml", content)).agones_gameserver
        assert loaded is not None
        assert loaded.labels == {"mode": "ranked", "region": "us", "1": "one", "true": "yes"}
        assert loaded.annotations == {"mode": "x"}
