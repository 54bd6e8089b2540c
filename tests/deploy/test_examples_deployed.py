"""Every example config, simulated and deployed, ends on the same model: one protocol, two runtimes.

The deployed side is the real deployment runtime (one `NodeRuntime` per member, keystores, HTTP
between nodes, a Hardhat node over JSON-RPC), each node in a thread of this process instead of its
own process, so that seven studies fit in the suite's time; tests/deploy/test_local_consortium.py
and test_deployed_secure.py run members as real processes, kill and restart them.
"""

import dataclasses
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fedledger.audit import verify_run
from fedledger.chain import RpcChain, open_chain, study_contract
from fedledger.config import AttackSection, load_config
from fedledger.deploy.devchain import HardhatNode
from fedledger.deploy.local import LocalConsortium
from fedledger.deploy.node import NodeRuntime, load_node_config
from fedledger.errors import ConfigError
from fedledger.rundir import RunDir
from fedledger.simulation import run_study
from fedledger.store import ArtifactStore

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.toml"))
ROUNDS = 2
FLEET = 8          # devices of an example that samples a fleet
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def dev_chain(tmp_path_factory, hardhat_installed):
    with HardhatNode(tmp_path_factory.mktemp("devchain") / "chain.log", block_interval_ms=200) as node:
        yield node


def shortened(cfg):
    """The example with few rounds, short local training and at most FLEET devices (half drawn
    each round, where it samples them): the same protocol, quicker."""
    cfg = dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, rounds=ROUNDS),
                              training=dataclasses.replace(cfg.training, local_steps=min(cfg.training.local_steps, 20)))
    if cfg.data.num_clients > FLEET and cfg.protocol.sample_fraction < 1:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_clients=FLEET),
                                  protocol=dataclasses.replace(cfg.protocol, sample_fraction=0.5))
    return cfg


def deploy_in_threads(cfg, directory, rpc_url, while_running=None):
    """Deploy the study and run every member's NodeRuntime to the end (calling `while_running()`
    once they have started); the consortium, the final model on chain, the audit (made while the
    nodes still serve their stores) and the runtimes."""
    local = LocalConsortium(directory, cfg, rpc_url, poll_seconds=0.1)
    consortium = local.create()
    runtimes = [NodeRuntime(load_node_config(local.node_file(m.name))) for m in local.members]
    stop = threading.Event()
    threads = [threading.Thread(target=r.run, args=(stop,), daemon=True) for r in runtimes]
    for thread in threads:
        thread.start()
    try:
        if while_running is not None:
            while_running()
        local.wait_until(lambda: all(r.done for r in runtimes) or any(not t.is_alive() for t in threads),
                         TIMEOUT_S, "the deployed study's end")
        assert all(r.done for r in runtimes) and not any(r.errors for r in runtimes), \
            {r.me.name: r.errors for r in runtimes}
        report = verify_run(local.consortium_dir, account=local.auditor())
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    final = consortium.study(RpcChain(rpc_url)).latest_model()
    return consortium, final, report, runtimes


class FlakyRelay:
    """A TCP relay on a free loopback port to a JSON-RPC node; `outage(s)` cuts every connection
    and refuses new ones for s seconds, as a node that restarts or a network that drops would."""

    def __init__(self, upstream_url):
        self.upstream = ("127.0.0.1", int(upstream_url.rsplit(":", 1)[1]))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.down = threading.Event()
        self.lock = threading.Lock()
        self.sockets = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.upstream)
            with self.lock:
                self.sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def outage(self, seconds):
        self.down.set()
        with self.lock:
            cut, self.sockets = self.sockets, set()
        for end in cut:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        time.sleep(seconds)
        self.down.clear()

    def close(self):
        self.listener.close()
        self.outage(0)


def spends(chain_description, chain_dir, architecture, address, names):
    """(round, member name, spend) of every release the study's contract recorded."""
    backend = open_chain(chain_description, chain_dir)
    try:
        study = study_contract(architecture, backend, address)
        return sorted((x.round, names[x.member], x.spend) for x in study.privacy_spends())
    finally:
        backend.close()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_an_example_ends_on_the_same_model_simulated_and_deployed(example, dev_chain, tmp_path):
    cfg = load_config(example)
    if cfg.attack.kind != "none":     # attacks are a simulation's experiment: deployment refuses them
        with pytest.raises(ConfigError, match=r"remove \[attack\]"):
            LocalConsortium(tmp_path / "refused", cfg, dev_chain.url).create()
        cfg = dataclasses.replace(cfg, attack=AttackSection())
    cfg = shortened(cfg)
    simulated = run_study(cfg, run_dir=tmp_path / "simulated", progress=False)
    consortium, final, report, _ = deploy_in_threads(cfg, tmp_path / "deployed", dev_chain.url)
    assert report.ok, report.summary()
    assert report.rounds == len(simulated.rounds) == ROUNDS
    expected = simulated.rounds[-1]["model"]
    if cfg.privacy.secure_aggregation == "ckks":       # approximate: within float32 rounding
        deployed = ArtifactStore(tmp_path / "deployed" / "consortium" / "store").get_params(final)
        reference = ArtifactStore(RunDir(simulated.run_dir).store).get_params(expected)
        assert np.abs(deployed - reference).max() < 1e-6
    elif cfg.privacy.mechanism != "none":
        # each deployed node draws its noise from its OS, in secret: the same mechanisms and
        # epsilons are recorded, the noise (and so the model) differs
        info = RunDir(simulated.run_dir).read_run_info()
        sim_names = {a: n for n, a in info["institutions"].items()}
        dep_names = {m.address: m.name for m in consortium.members}
        assert spends(info["chain"], RunDir(simulated.run_dir).chain, cfg.study.architecture,
                      info["contracts"]["ledger"], sim_names) == \
            spends(consortium.chain, None, cfg.study.architecture, consortium.contracts["ledger"], dep_names)
        assert final != expected
    else:
        assert final == expected


def test_nodes_ride_out_a_chain_outage_and_count_it_apart_from_their_errors(dev_chain, tmp_path):
    """The JSON-RPC node goes silent for longer than web3's own retries wait (about 2 s): the
    steps that meet it fail, wait and try again; the study ends on the model the simulation
    makes, and the outage is counted as such (`chain_outages`), not as the node's error."""
    cfg = shortened(load_config(EXAMPLES[0].with_name("fed_heart_disease.toml")))
    simulated = run_study(cfg, run_dir=tmp_path / "simulated", progress=False)
    relay = FlakyRelay(dev_chain.url)
    try:
        _, final, report, runtimes = deploy_in_threads(cfg, tmp_path / "deployed", relay.url,
                                                       while_running=lambda: relay.outage(4.0))
    finally:
        relay.close()
    assert report.ok, report.summary()
    assert final == simulated.rounds[-1]["model"]
    # a node busy off chain (training, aggregating) through the outage may never have met it
    assert sum(r.chain_outages for r in runtimes) >= 1, {r.me.name: r.chain_outages for r in runtimes}
    assert all(r.status()["chain_outages"] == r.chain_outages for r in runtimes)
