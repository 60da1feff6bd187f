"""The bootstep graph: ordering, and the errors a broken composition must produce."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest

from kernel.errors import CycleError, DuplicateProviderError, MissingRoleError
from kernel.graph import StepSpec, resolve


def spec(
    name: str,
    *,
    provides: tuple[str, ...] = (),
    requires: tuple[str, ...] = (),
    after: tuple[str, ...] = (),
    before: tuple[str, ...] = (),
    plugin: str = "p",
) -> StepSpec:
    return StepSpec(
        name=name, plugin=plugin, provides=provides, requires=requires, after=after, before=before
    )


WORKER = [
    spec("consumer", requires=("pool", "broker")),
    spec("threads", provides=("pool",), plugin="pool.threads"),
    spec("connection", provides=("broker",), plugin="broker.redis"),
    spec("autoscaler", requires=("pool",), before=("consumer",)),
    spec("banner", after=("consumer", "nonexistent")),
]


def test_requirements_start_first_whatever_the_names() -> None:
    order = resolve(WORKER).order
    assert order.index("threads") < order.index("consumer")
    assert order.index("connection") < order.index("consumer")
    assert order.index("threads") < order.index("autoscaler") < order.index("consumer")
    assert order.index("consumer") < order.index("banner")  # soft "after"; absent names ignored


def test_order_is_the_same_for_every_input_order() -> None:
    orders = {resolve(list(perm)).order for perm in itertools.permutations(WORKER)}
    assert len(orders) == 1
    # ties break by name: independent steps come out alphabetically
    assert resolve([spec("b"), spec("c"), spec("a")]).order == ("a", "b", "c")


def test_order_is_the_same_across_processes() -> None:
    # set() iteration order follows the hash seed, so each process feeds the steps differently
    code = (
        "from kernel.graph import StepSpec, resolve\n"
        "s = lambda n, **k: StepSpec(name=n, plugin='p', **k)\n"
        "steps = [s('z'), s('m', requires=('r',)), s('q', provides=('r',)), s('a', after=('z',))]\n"
        "steps += [s(n) for n in set(['h', 'g', 'f', 'e', 'd', 'c', 'b'])]\n"
        "print(' '.join(resolve(steps).order))\n"
    )
    outputs = set()
    for seed in ("1", "2", "3", "4"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
        outputs.add(out)
    assert len(outputs) == 1, outputs


def test_cycle_names_its_members() -> None:
    steps = [
        spec("a", requires=("b",)),
        spec("b", requires=("role-c",)),
        spec("c", provides=("role-c",), requires=("a",)),
        spec("d"),
    ]
    with pytest.raises(CycleError) as info:
        resolve(steps)
    assert info.value.members == ["a", "b", "c"]
    assert str(info.value).startswith("bootstep cycle: a -> b -> c -> a")


def test_soft_ordering_can_also_close_a_cycle() -> None:
    with pytest.raises(CycleError, match="x -> y -> x"):
        resolve([spec("x", requires=("y",)), spec("y", after=("x",))])


def test_step_requiring_its_own_role_is_a_cycle() -> None:
    with pytest.raises(CycleError, match="solo -> solo"):
        resolve([spec("solo", provides=("pool",), requires=("pool",))])


def test_missing_role_names_the_step_the_role_and_the_provider() -> None:
    def hint(role: str) -> str | None:
        return "pick one with --pool (solo, threads)" if role == "pool" else None

    with pytest.raises(MissingRoleError) as info:
        resolve([spec("consumer", requires=("pool",))], hint)
    assert (info.value.step, info.value.role) == ("consumer", "pool")
    assert str(info.value) == (
        "step 'consumer' requires 'pool', which no enabled plugin provides;"
        " pick one with --pool (solo, threads)"
    )


def test_two_providers_of_a_role_are_refused() -> None:
    steps = [
        spec("threads", provides=("pool",), plugin="pool.threads"),
        spec("prefork", provides=("pool",), plugin="pool.prefork"),
    ]
    with pytest.raises(DuplicateProviderError) as info:
        resolve(steps)
    message = str(info.value)
    assert "role 'pool'" in message
    assert (
        "'prefork' (plugin pool.prefork)" in message
        and "'threads' (plugin pool.threads)" in message
    )


def test_two_steps_with_one_name_are_refused() -> None:
    with pytest.raises(DuplicateProviderError, match="'consumer'"):
        resolve([spec("consumer", plugin="a"), spec("consumer", plugin="b")])


def test_a_role_may_not_shadow_another_steps_name() -> None:
    with pytest.raises(DuplicateProviderError):
        resolve([spec("pool"), spec("threads", provides=("pool",))])


def test_dot_output_has_every_step_and_edge() -> None:
    dot = resolve(WORKER).to_dot()
    assert dot.startswith("digraph kernel {") and dot.rstrip().endswith("}")
    assert '"threads" -> "consumer";' in dot
    assert '"autoscaler" -> "consumer" [style=dashed];' in dot
    assert 'label="threads\\nprovides: pool\\nplugin: pool.threads"' in dot


def test_a_step_that_starts_last_waits_for_every_step_not_ordered_after_it() -> None:
    # a policy step with no ordering of its own ("zz-limiter" sorts after "consumer") must be
    # in place before work flows; a step that needs the consumer still starts after it
    steps = [
        StepSpec(name="consumer", plugin="core", requires=("pool",), start_last=True),
        spec("pool", provides=("pool",)),
        spec("zz-limiter"),
        spec("autoscaler", requires=("consumer",)),
        spec("reporter", requires=("autoscaler",)),
    ]
    order = resolve(steps).order
    assert order.index("zz-limiter") < order.index("consumer")
    assert order.index("pool") < order.index("consumer")
    assert order.index("consumer") < order.index("autoscaler") < order.index("reporter")
    assert order == resolve(list(reversed(steps))).order  # the same whatever the input order
