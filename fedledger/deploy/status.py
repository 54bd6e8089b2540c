"""`fedledger status`: members, the open round and its phase, and who has committed, read from
the chain (and, for a loose study's off-chain offers, from the members' endpoints).

Nodes answer members only: with a member's (or an auditor's) key the status says which nodes are
done and who offered a loose update; without one, only whether each node answers at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from fedledger.chain import (
    SemiStudy,
    Consortium,
    LooseStudy,
    open_chain,
)
from fedledger.deploy.client import MemberClient, NodeUnreachable
from fedledger.deploy.consortium import load_consortium

PHASES = {"semi": {1: "committing", 2: "aggregating"}, "full": {1: "committing", 2: "scoring", 3: "voting"}}
PROBE_TIMEOUT_S = (1.0, 2.0)
COMMITTED = {True: "yes", False: "", None: "?"}   # None: a loose offer the status could not ask about (no key)


def consortium_status(path: str | Path, account: LocalAccount | None = None) -> dict[str, Any]:
    """Where the study of the consortium file at `path` stands, as a JSON-able document; the
    nodes are asked with `account`'s signature (see the module's doc)."""
    c = load_consortium(path)
    backend = open_chain(c.chain, None)
    try:
        consortium = Consortium(backend, c.contracts["consortium"])
        members = consortium.members()
        client = MemberClient(consortium, {m.endpoint: m.address for m in c.members if m.endpoint}, account)
        address = c.contracts["ledger"]
        doc: dict[str, Any] = {"architecture": c.architecture, "study": c.config["study"]["name"],
                               "rounds": c.config["study"]["rounds"], "block": backend.block_number(),
                               "ledger": address}
        study = c.study(backend)
        if isinstance(study, LooseStudy):
            finished, started = study.round_count(), study.coordinator() != "0x" + "00" * 20
            doc.update(finished=finished, phase="collecting updates" if started else "not started",
                       latest_model=study.latest_model() if started else None)
            committed = None if account is None else [
                m.address for m in c.institutions
                if client.get_json(m.endpoint, f"/rounds/{finished + 1}/update", PROBE_TIMEOUT_S) is not None]
        else:
            finished = study.round_count()
            doc.update(finished=finished, phase=PHASES[c.architecture].get(study.phase(), "?"),
                       phase_deadline=study.phase_deadline(), latest_model=study.latest_model())
            committed = study.committers(finished + 1)
            if isinstance(study, SemiStudy) and doc["phase"] == "aggregating":
                doc["committee"] = study.committee(finished + 1, study.attempt())
        # every study contract keeps reputation and suspensions for its institutions
        reputation = {m.address: study.reputation(m.address) for m in c.institutions}
        suspended = {m.address for m in c.institutions if study.suspended(m.address)}
        doc["open_round"] = finished + 1 if finished < doc["rounds"] else None
        endpoints = {m.address: m.endpoint for m in c.members if m.endpoint}
        doc["members"] = []
        for m in members:
            node = _probe(client, endpoints[m.address], account is not None) if m.address in endpoints else "-"
            doc["members"].append({"name": m.name, "address": m.address, "roles": m.roles.name, "active": m.active,
                                   "reputation": reputation.get(m.address), "suspended": m.address in suspended,
                                   "committed": None if committed is None else m.address in committed,
                                   "node": node})
        return doc
    finally:
        backend.close()


def _probe(client: MemberClient, endpoint: str, signed: bool) -> str:
    """"done", "up" or "down"; unsigned, a node that answers at all (it refuses) is "up"."""
    if signed:
        node = client.get_json(endpoint, "/status", PROBE_TIMEOUT_S)
        return "down" if node is None else ("done" if node.get("done") else "up")
    try:
        client.get(endpoint, "/status", PROBE_TIMEOUT_S).release_conn()
        return "up"
    except NodeUnreachable:
        return "down"


def format_status(doc: dict[str, Any]) -> str:
    """The status document as a few lines of text."""
    if doc["open_round"] is None:
        where = f"all {doc['rounds']} rounds finalized"
        if doc["finished"] > doc["rounds"]:   # someone went on past the consortium file's study
            where = (f"{doc['finished']} rounds finalized: {doc['finished'] - doc['rounds']} more than the "
                     f"{doc['rounds']} this consortium file's study has")
    else:
        where = f"round {doc['open_round']} of {doc['rounds']}: {doc['phase']}"
        if "phase_deadline" in doc:
            where += f" (deadline block {doc['phase_deadline']}, now {doc['block']})"
    lines = [f"{doc['study']} ({doc['architecture']}), ledger {doc['ledger']}", where]
    if doc.get("committee"):
        lines.append("committee: " + ", ".join(doc["committee"]))
    lines.append(f"{'member':<16} {'address':<42} {'roles':<12} {'node':<5} {'rep':>5}  committed")
    for m in doc["members"]:
        rep = "" if m["reputation"] is None else str(m["reputation"])
        name = m["name"] + ("" if m["active"] else " (removed)") + (" (suspended)" if m.get("suspended") else "")
        lines.append(f"{name:<16} {m['address']:<42} {m['roles'] or '':<12} {m['node']:<5} {rep:>5}  "
                     f"{COMMITTED[m['committed']]}")
    return "\n".join(lines)
