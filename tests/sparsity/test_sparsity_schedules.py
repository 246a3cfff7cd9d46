import numpy as np
import optax
import pytest

from jaxspeech.sparsity import cubic_sparsity, is_pruning_step, pruning_schedule


def test_cubic_values_at_begin_middle_end_match_the_formula():
    schedule = pruning_schedule(
        initial_sparsity=0.1, final_sparsity=0.8, begin_step=10, end_step=30, frequency=5
    )
    for step, x in [(10, 0.0), (15, 0.25), (20, 0.5), (30, 1.0)]:
        want = 0.1 + (0.8 - 0.1) * (1 - (1 - x) ** 3)
        assert float(cubic_sparsity(schedule, step)) == pytest.approx(want, abs=1e-6)
    assert float(cubic_sparsity(schedule, 20)) == pytest.approx(0.1 + 0.7 * 0.875, abs=1e-6)
    assert float(cubic_sparsity(schedule, 0)) == pytest.approx(0.1)  # before begin: initial
    assert float(cubic_sparsity(schedule, 99)) == pytest.approx(0.8)  # after end: final


def test_cubic_equals_optax_polynomial_schedule_of_power_three():
    schedule = pruning_schedule(initial_sparsity=0.2, final_sparsity=0.9, begin_step=7, end_step=27)
    reference = optax.polynomial_schedule(0.2, 0.9, power=3, transition_steps=20, transition_begin=7)
    steps = np.arange(0, 40)
    np.testing.assert_allclose(
        [float(cubic_sparsity(schedule, s)) for s in steps], [float(reference(s)) for s in steps], atol=1e-6
    )


def test_pruning_steps_on_the_grid_and_at_end():
    schedule = pruning_schedule(final_sparsity=0.5, begin_step=2, end_step=12, frequency=3)
    events = [s for s in range(20) if bool(is_pruning_step(schedule, s))]
    assert events == [2, 5, 8, 11, 12]
    one_shot = pruning_schedule(final_sparsity=0.5, begin_step=4, end_step=4)
    assert [s for s in range(10) if bool(is_pruning_step(one_shot, s))] == [4]
    assert float(cubic_sparsity(one_shot, 3)) == 0.0 and float(cubic_sparsity(one_shot, 4)) == 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(final_sparsity=1.0, begin_step=0, end_step=5), "final_sparsity"),
        (dict(final_sparsity=0.3, initial_sparsity=0.5, begin_step=0, end_step=5), "initial_sparsity"),
        (dict(final_sparsity=0.5, begin_step=6, end_step=5), "begin_step"),
        (dict(final_sparsity=0.5, begin_step=0, end_step=5, frequency=0), "frequency"),
        (dict(final_sparsity=0.5, begin_step=0.5, end_step=5), "begin_step"),
    ],
)
def test_bad_schedules_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pruning_schedule(**kwargs)
