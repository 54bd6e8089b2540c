"""`fedledger status`'s text says what the chain holds (issue 14, finding 12: it said "all 3
rounds finalized" when a fourth was anchored)."""

from fedledger.deploy.status import format_status


def _doc(finished: int, rounds: int = 3) -> dict:
    return {"study": "s", "architecture": "loose", "ledger": "0x" + "11" * 20, "rounds": rounds, "block": 40,
            "finished": finished, "phase": "collecting updates",
            "open_round": finished + 1 if finished < rounds else None, "members": []}


def test_status_counts_the_rounds_the_chain_holds():
    assert format_status(_doc(2)).splitlines()[1] == "round 3 of 3: collecting updates"
    assert format_status(_doc(3)).splitlines()[1] == "all 3 rounds finalized"
    assert format_status(_doc(4)).splitlines()[1] == \
        "4 rounds finalized: 1 more than the 3 this consortium file's study has"
