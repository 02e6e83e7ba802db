"""The match read from the matchmaker's MM_* variables (SPEC §12): tickets, teams, expansion,
and the SIDECAR_MATCH_* settings."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar.config import load_settings, settings_json
from sidecar.deployment import parse_deployment
from sidecar.errors import ConfigError
from sidecar.lifecycle import Quorum, QuorumRule

# Shaped like the SDK's mock (edgegap-matchmaker-and-server-browser.md, A.2): MM_TEAMS holds
# group ids, each group one ticket.
A, B, C = "d1aaaaaaaaaaaaaaaaa0", "d1bbbbbbbbbbbbbbbbb0", "d1ccccccccccccccccc0"


def ticket(ticket_id: str, **fields: Any) -> str:
    body = {
        "id": ticket_id,
        "created_at": "2026-03-02T09:59:58.100000Z",
        "player_ip": "203.0.113.7",
        "group_id": f"group-{ticket_id}",
        "team_id": "team-x",
        "attributes": {"beacons": {"Chicago": 14.2}, "selected_map": ["Mill"]},
    }
    body.update(fields)
    return json.dumps(body)


def matchmaker(**overrides: str | None) -> dict[str, str]:
    env: dict[str, str | None] = {
        "MM_MATCH_ID": "duo-ranked_initial-2026-03-02T10:00:05.1234567Z",
        "MM_MATCH_PROFILE": "duo-ranked",
        "MM_TICKET_IDS": json.dumps([A, B]),
        f"MM_TICKET_{A}": ticket(A, group_id="g-A"),
        f"MM_TICKET_{B}": ticket(B, group_id="g-B"),
        "MM_GROUPS": json.dumps({"g-A": [A], "g-B": [B]}),
        "MM_TEAMS": json.dumps({"red": ["g-A"], "blue": ["g-B"]}),
    }
    env.update(overrides)
    return {name: value for name, value in env.items() if value is not None}


class TestTickets:
    def test_each_listed_ticket_is_an_expected_player(self) -> None:
        """Every id of MM_TICKET_IDS with its MM_TICKET_<id> is a ticket, in list order."""
        info = parse_deployment(matchmaker()).match
        assert info.has_data
        assert info.tickets is not None
        assert list(info.tickets) == [A, B]
        assert info.tickets[A].player_ip == "203.0.113.7"
        assert info.tickets[A].attributes == {
            "beacons": {"Chicago": 14.2},
            "selected_map": ["Mill"],
        }
        assert info.match_id == "duo-ranked_initial-2026-03-02T10:00:05.1234567Z"
        assert info.profile == "duo-ranked"
        expected = info.expected()
        assert expected is not None
        assert expected.tickets == (A, B)

    def test_without_ticket_ids_there_is_no_match_data(self) -> None:
        """No MM_TICKET_IDS: no match data, even with tickets and a match id."""
        info = parse_deployment(matchmaker(MM_TICKET_IDS=None)).match
        assert not info.has_data
        assert info.expected() is None
        assert info.match_id is not None  # MM_MATCH_ID is still the match id

    def test_an_unusable_ticket_list_is_no_match_data(self) -> None:
        """A malformed MM_TICKET_IDS is ignored as a whole (one warning): no match data."""
        parsed = parse_deployment(matchmaker(MM_TICKET_IDS="[not json"))
        assert not parsed.match.has_data
        assert [w for w in parsed.warnings if "MM_TICKET_IDS" in w] != []

    def test_the_id_list_is_not_a_ticket(self) -> None:
        """MM_TICKET_IDS starts with MM_TICKET_ but never counts as a ticket."""
        info = parse_deployment(matchmaker()).match
        assert info.tickets is not None
        assert "IDS" not in info.tickets

    @pytest.mark.parametrize(
        ("value", "warning"),
        [
            ("{broken", f"MM_TICKET_{A} is not valid JSON"),
            ('["a list"]', f"MM_TICKET_{A} is not a JSON object"),
            (ticket("someone-else"), f"MM_TICKET_{A} has an id that is not"),
            (ticket(A, team_id=7), f'MM_TICKET_{A} has a "team_id" that is not text'),
            (ticket(A, attributes=[1]), f'MM_TICKET_{A} has "attributes" that are not'),
        ],
    )
    def test_a_malformed_ticket_is_skipped_with_one_warning(self, value: str, warning: str) -> None:
        """A bad ticket is skipped with one warning naming it; the others count."""
        parsed = parse_deployment(matchmaker(**{f"MM_TICKET_{A}": value}))
        assert parsed.match.tickets is not None
        assert list(parsed.match.tickets) == [B]
        about = [w for w in parsed.warnings if f"MM_TICKET_{A}" in w]
        assert len(about) == 1
        assert about[0].startswith(warning)

    def test_a_ticket_named_ids_is_skipped_with_a_warning_that_says_why(self) -> None:
        """An id "IDS" would be given in MM_TICKET_IDS, the list itself: skipped, and the
        warning says so instead of calling the list unset."""
        parsed = parse_deployment(matchmaker(MM_TICKET_IDS=json.dumps([A, "IDS", B])))
        assert parsed.match.tickets is not None
        assert list(parsed.match.tickets) == [A, B]
        about = [w for w in parsed.warnings if '"IDS"' in w]
        assert len(about) == 1
        assert "the id list itself" in about[0]
        assert not [w for w in parsed.warnings if "is not set" in w]

    def test_a_listed_ticket_without_its_variable_is_skipped(self) -> None:
        """An id listed with no MM_TICKET_<id> is skipped with one warning."""
        parsed = parse_deployment(matchmaker(MM_TICKET_IDS=json.dumps([A, B, C])))
        assert parsed.match.tickets is not None
        assert list(parsed.match.tickets) == [A, B]
        assert f"MM_TICKET_{C} is not set: ticket skipped" in parsed.warnings

    def test_entries_that_are_not_ids_are_skipped(self) -> None:
        """Non-string entries of MM_TICKET_IDS are dropped with one warning; duplicates
        count once."""
        parsed = parse_deployment(matchmaker(MM_TICKET_IDS=json.dumps([A, 3, None, A, B])))
        assert parsed.match.tickets is not None
        assert list(parsed.match.tickets) == [A, B]
        assert "MM_TICKET_IDS has 2 entries that are not ticket ids" in parsed.warnings

    @pytest.mark.parametrize("bad", ["t" * 129, "ctl\u0001", "line\nbreak", "tab\there"])
    def test_ids_no_connect_can_name_are_skipped_with_one_warning(self, bad: str) -> None:
        """A ticket id the connect API would refuse (over 128 characters, not printable) can
        never arrive: it is not expected (else the match ends as a no-show), with one warning
        naming MM_TICKET_IDS; the other tickets count."""
        env = matchmaker(MM_TICKET_IDS=json.dumps([A, bad, B]))
        env[f"MM_TICKET_{bad}"] = ticket(bad)
        parsed = parse_deployment(env)
        assert parsed.match.tickets is not None
        assert list(parsed.match.tickets) == [A, B]
        (warning,) = [w for w in parsed.warnings if "no connect can name" in w]
        assert warning.startswith("MM_TICKET_IDS has 1 ticket ids")

    @pytest.mark.parametrize("bad", ["m\nX", "m\r\n", "m" * 129, "m\u0001"])
    def test_an_unusable_match_id_is_ignored_with_one_warning(self, bad: str) -> None:
        """MM_MATCH_ID that could not travel in a header or a label is ignored, with a warning
        naming it; the id given to match start is used instead."""
        parsed = parse_deployment(matchmaker(MM_MATCH_ID=bad))
        assert parsed.match.match_id is None
        assert any(w.startswith("MM_MATCH_ID is not 1-128 printable") for w in parsed.warnings)

    def test_an_empty_list_is_a_match_of_nobody(self) -> None:
        """MM_TICKET_IDS=[]: match data with no tickets."""
        info = parse_deployment(matchmaker(MM_TICKET_IDS="[]")).match
        assert info.has_data
        assert info.tickets == {}

    def test_a_ticket_without_its_own_id_takes_the_listed_one(self) -> None:
        """A ticket object without `id` is the ticket its name gives."""
        info = parse_deployment(matchmaker(**{f"MM_TICKET_{A}": '{"team_id": "red"}'})).match
        assert info.tickets is not None
        assert info.tickets[A].id == A


class TestTeams:
    def test_teams_of_group_ids_are_resolved_through_the_groups(self) -> None:
        """The SDK's shape: MM_TEAMS lists group ids, MM_GROUPS gives their tickets."""
        info = parse_deployment(matchmaker()).match
        assert info.teams == {"red": (A,), "blue": (B,)}

    def test_teams_of_ticket_ids_are_taken_as_they_are(self) -> None:
        """MM_TEAMS listing ticket ids works too."""
        info = parse_deployment(
            matchmaker(MM_TEAMS=json.dumps({"red": [A], "blue": [B]}), MM_GROUPS=None)
        ).match
        assert info.teams == {"red": (A,), "blue": (B,)}

    def test_without_mm_teams_the_tickets_team_ids_make_the_teams(self) -> None:
        """No MM_TEAMS: teams from each ticket's team_id."""
        env = matchmaker(
            MM_TEAMS=None,
            **{f"MM_TICKET_{A}": ticket(A, team_id="t1"), f"MM_TICKET_{B}": ticket(B)},
        )
        info = parse_deployment(env).match
        assert info.teams == {"t1": (A,), "team-x": (B,)}

    def test_no_team_data_means_no_teams(self) -> None:
        """No MM_TEAMS and no team_id: no teams (the `teams` quorum acts as 1)."""
        env = matchmaker(
            MM_TEAMS=None,
            **{
                f"MM_TICKET_{A}": ticket(A, team_id=None),
                f"MM_TICKET_{B}": ticket(B, team_id=None),
            },
        )
        assert parse_deployment(env).match.teams == {}

    def test_a_team_of_skipped_tickets_is_left_out(self) -> None:
        """Teams only hold expected tickets; a team left empty is no team."""
        env = matchmaker(**{f"MM_TICKET_{B}": "{bad"})
        assert parse_deployment(env).match.teams == {"red": (A,)}

    def test_the_team_of_a_ticket_without_team_id_is_its_mm_team(self) -> None:
        """A ticket that carries no team_id shows the team MM_TEAMS gives it."""
        info = parse_deployment(matchmaker(**{f"MM_TICKET_{A}": ticket(A, team_id=None)})).match
        assert info.tickets is not None
        assert info.team_of(info.tickets[A]) == "red"


class TestExpansion:
    @pytest.mark.parametrize("name", ["MM_EXPANSION", "MM_EXPANSION_STAGE"])
    def test_either_name_is_read(self, name: str) -> None:
        """The expansion stage's name is disputed: both are read."""
        parsed = parse_deployment(matchmaker(**{name: "initial"}))
        assert parsed.match.expansion == "initial"
        assert parsed.matchmaker["expansion"] == "initial"

    def test_mm_expansion_wins_when_both_are_set(self) -> None:
        """Both set: MM_EXPANSION first."""
        env = matchmaker(MM_EXPANSION="first", MM_EXPANSION_STAGE="second")
        assert parse_deployment(env).match.expansion == "first"


class TestSettings:
    @pytest.mark.parametrize(
        ("text", "quorum"),
        [
            ("1", Quorum()),
            ("4", Quorum(QuorumRule.COUNT, 4)),
            (" ALL ", Quorum(QuorumRule.ALL)),
            ("teams", Quorum(QuorumRule.TEAMS)),
        ],
    )
    def test_quorum_forms(self, text: str, quorum: Quorum) -> None:
        """SIDECAR_MATCH_QUORUM takes a number, all or teams."""
        assert load_settings({"SIDECAR_MATCH_QUORUM": text}).match_quorum == quorum

    @pytest.mark.parametrize("text", ["0", "-1", "some", "2.5", "٣", ""])
    def test_a_bad_quorum_is_exit_2_naming_it(self, text: str) -> None:
        """Anything else is a configuration error naming the variable."""
        with pytest.raises(ConfigError) as caught:
            load_settings({"SIDECAR_MATCH_QUORUM": text})
        assert caught.value.variable == "SIDECAR_MATCH_QUORUM"

    def test_check_config_json_shows_the_quorum_as_configured(self) -> None:
        """`check-config --json`: a number stays a number, all/teams stay words."""
        assert settings_json(load_settings({}))["SIDECAR_MATCH_QUORUM"] == 1
        teams = load_settings({"SIDECAR_MATCH_QUORUM": "teams"})
        assert settings_json(teams)["SIDECAR_MATCH_QUORUM"] == "teams"

    def test_defaults(self) -> None:
        """No-show 60 s, quorum 1, not strict; the timer reaches the lifecycle."""
        settings = load_settings({})
        assert (settings.no_show_timeout, str(settings.match_quorum)) == (60, "1")
        assert settings.match_strict is False
        timers = load_settings({"SIDECAR_NO_SHOW_TIMEOUT": "90s"}).timer_settings()
        assert timers.no_show_timeout == 90
