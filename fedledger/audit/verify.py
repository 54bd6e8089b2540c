"""`verify_run`: re-check a run holding only its chain and its artifact store.

The run directory's run.json only says where to look (which chain, which contracts). Every fact
is taken from the chain (round records, membership history, the study's config digest) and from
content-addressed artifacts re-hashed on read; nothing the coordinator wrote elsewhere is trusted.
What the run directory shows its reader (config.json, metrics.jsonl, results.json, metrics.png)
is then checked against those facts and the institutions' signed evaluations (audit/outputs.py).
The auditor never writes into the store it audits, except that for a deployed consortium (whose
run.json lists the members' endpoints as peers) it keeps the artifacts it fetches from them,
each checked against its digest like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from eth_account.signers.local import LocalAccount

from fedledger.audit.base import Auditor
from fedledger.audit.checkpoints import verify_checkpoints
from fedledger.audit.full import FullAuditor
from fedledger.audit.loose import LooseAuditor
from fedledger.audit.outputs import verify_outputs
from fedledger.audit.report import AuditReport
from fedledger.audit.semi import SemiAuditor
from fedledger.chain import ChainBackend, Consortium, open_chain
from fedledger.deploy.client import MemberClient
from fedledger.errors import FedLedgerError
from fedledger.rundir import RunDir
from fedledger.store.peers import PeerStore

# each architecture's auditor; run.json names the architecture
AUDITORS: dict[str, type[Auditor]] = {"loose": LooseAuditor, "semi": SemiAuditor, "full": FullAuditor}


def verify_run(run_dir: str | Path, expected_head: str | None = None,
               account: LocalAccount | None = None, checkpoints: Sequence[str | Path] = ()) -> AuditReport:
    """Check every round of a run; the report lists each check and why any failed.

    `expected_head` is a block hash the auditor got from elsewhere (the end of `fedledger run`
    prints it): the chain must contain that block, which a chain rebuilt from scratch would not.
    `account`: a member's key (an auditor's, to read every update) to sign requests to the
    peers with; without one the peers refuse, and what only they hold is reported missing.
    `checkpoints`: members' signed checkpoint files (a deployed node's state/checkpoints.jsonl):
    the chain must hold every block they name, which a rebuilt chain would not.
    """
    run = RunDir(Path(run_dir))
    report = AuditReport(str(run.path))
    info = run.read_run_info()
    if info.get("chain") is None:
        report.record("study", "ledger present", False, "the run was made with the ledger switched off")
        return report
    try:
        backend = open_chain(info["chain"], run.chain)
    except FedLedgerError as exc:
        report.record("chain", "chain reopened intact", False, str(exc))
        return report
    try:
        if expected_head is not None:
            report.record("chain", "contains the expected head block", _has_block(backend, expected_head),
                          f"no block {expected_head} on this chain: it is not the chain the run ended on")
        peers = info.get("peers") or []
        client = None
        if peers:
            client = MemberClient(Consortium(backend, info["contracts"]["consortium"]), info.get("peer_members") or {},
                                  account)
            report.not_verified(f"the peers run.json names ({len(peers)}) are not on chain; a blob fetched "
                                "from them is accepted only if it hashes to its digest")
            if account is None:
                report.not_verified("the artifacts only the members' nodes hold: they serve members alone, and "
                                    "no member key was given to sign requests with")
        store = PeerStore(run.store, peers, client)
        auditor = AUDITORS.get(info.get("architecture"), LooseAuditor)(report, backend, info, store)
        if checkpoints:
            members = {e["member"].lower() for e in auditor.membership if e["event"] == "MemberAdded"}
            verify_checkpoints(report, backend, info["contracts"]["ledger"], members, [Path(p) for p in checkpoints])
        elif expected_head is None:
            report.not_verified("that this is the chain the run ended on: without --head (the block hash "
                                "`fedledger run` prints) or members' --checkpoints, a chain rebuilt from scratch "
                                "would pass")
        auditor.verify_names(info.get("institutions") or {})
        auditor.verify()
        auditor.verify_complete(auditor.roster(info))
        verify_outputs(auditor, run)
    finally:
        backend.close()
    return report


def _has_block(backend: ChainBackend, block_hash: str) -> bool:
    try:
        return backend.w3.eth.get_block(block_hash)["hash"].to_0x_hex() == block_hash.lower()
    except Exception:  # web3 raises several types for "no such block" or a malformed hash
        return False

