"""`python -m swallow_train.launch.ray_wait`: the RL job waits for every node and GPU to join."""

from __future__ import annotations

from swallow_train.launch.ray_wait import capacity, wait


class FakeRay:
    """ray.init/nodes/shutdown over a scripted sequence of cluster states."""

    def __init__(self, states):
        self.states = list(states)
        self.calls: list[str] = []

    def init(self, address, logging_level):
        self.calls.append(f"init {address}")

    def nodes(self):
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def shutdown(self):
        self.calls.append("shutdown")


def node(gpus, alive=True):
    return {"Alive": alive, "Resources": {"GPU": float(gpus), "CPU": 192.0}}


def test_capacity_counts_alive_nodes_and_their_gpus():
    assert capacity([node(8), node(8, alive=False), node(8), {"Alive": True}]) == (3, 16.0)


def test_wait_returns_once_every_node_has_joined():
    ray = FakeRay([[node(8)], [node(8), node(8, alive=False)], [node(8), node(8)]])
    clock = iter(range(100))
    slept: list[float] = []
    said: list[str] = []
    assert wait(2, 16, 60, ray=ray, poll=5, clock=lambda: next(clock), sleep=slept.append,
                say=said.append)
    assert slept == [5, 5]
    assert said == ["ray: 2 node(s), 16 GPU(s) ready"]
    assert ray.calls == ["init auto", "shutdown"]


def test_wait_gives_up_at_the_timeout():
    ray = FakeRay([[node(8)]])
    clock = iter(range(0, 1000, 10))
    said: list[str] = []
    assert not wait(2, 16, 30, ray=ray, clock=lambda: next(clock), sleep=lambda s: None,
                    say=said.append)
    assert said == ["ray: only 1/2 node(s), 8/16 GPU(s) after 30 s"]
    assert ray.calls[-1] == "shutdown"
