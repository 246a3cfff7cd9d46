import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxspeech.sparsity import (
    apply_masks,
    default_prunable,
    gradual_magnitude_pruning,
    is_pruning_step,
    param_path,
    pruning_masks,
    pruning_schedule,
    sparsity_of,
)

S0, S1 = 0.2, 0.8  # with the sizes below, s * n never lands near a rounding tie
SCHEDULE = pruning_schedule(initial_sparsity=S0, final_sparsity=S1, begin_step=2, end_step=12, frequency=3)
PRUNABLE = ("conv/kernel", "dense1/kernel", "dense2/kernel")
NUM_STEPS = 18


def toy_params(seed=0):
    rng = np.random.default_rng(seed)
    shapes = {
        "dense1": {"kernel": (9, 7), "bias": (7,)},
        "dense2": {"kernel": (7, 5)},
        "conv": {"kernel": (3, 4, 6)},
        "embed": {"embedding": (11, 4)},
        "norm": {"scale": (7,)},
    }
    return jax.tree.map(
        lambda s: jnp.asarray(rng.normal(size=s), jnp.float32), shapes, is_leaf=lambda x: isinstance(x, tuple)
    )


def separable_loss(params, targets):
    """Each weight's gradient depends only on itself, so with an elementwise optimizer every
    kept or non-prunable weight must follow the dense run exactly."""
    pairs = zip(jax.tree.leaves(params), jax.tree.leaves(targets))
    return sum(jnp.sum((p - t) ** 2 * (1 + jnp.abs(t))) for p, t in pairs)


def run(optimizer, params, steps=NUM_STEPS):
    """Jitted steps; returns the params before each step, after the last, and masks after each step."""
    targets = toy_params(1)
    state = optimizer.init(params)

    @jax.jit
    def step(params, state):
        grads = jax.grad(separable_loss)(params, targets)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    history, masks = [], []
    for _ in range(steps):
        history.append(jax.device_get(params))
        params, state = step(params, state)
        masks.append(jax.device_get(pruning_masks(state)) if _has_pruning(state) else None)
    history.append(jax.device_get(params))
    return history, masks, state


def _has_pruning(state):
    try:
        pruning_masks(state)
    except ValueError:
        return False
    return True


def flat(tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {param_path(path): np.asarray(leaf) for path, leaf in leaves}


def expected_sparsity(step):
    """Target sparsity in force after update `step` (float64 reference of the cubic formula)."""
    begin, end, frequency = SCHEDULE.begin_step, SCHEDULE.end_step, SCHEDULE.frequency
    events = [s for s in range(begin, min(step, end) + 1) if (s - begin) % frequency == 0 or s == end]
    if not events:
        return 0.0
    x = (events[-1] - SCHEDULE.begin_step) / (SCHEDULE.end_step - SCHEDULE.begin_step)
    return S0 + (S1 - S0) * (1 - (1 - x) ** 3)


def _round(value):
    fraction = value - np.floor(value)
    assert abs(fraction - 0.5) > 1e-3, "test sizes must keep s * n away from a rounding tie"
    return int(np.round(value))


def test_per_layer_sparsity_follows_schedule_and_prunes_smallest():
    optimizer = gradual_magnitude_pruning(optax.adam(0.05), SCHEDULE, scope="layer")
    history, masks, _ = run(optimizer, toy_params())
    for step in range(NUM_STEPS):
        after, mask = flat(history[step + 1]), flat(masks[step])
        assert sorted(mask) == sorted(PRUNABLE)  # None (no mask) elsewhere
        report = sparsity_of(history[step + 1], masks[step])
        for name in PRUNABLE:
            n = after[name].size
            k = _round(expected_sparsity(step) * n)
            assert int((~mask[name]).sum()) == k, (step, name)
            assert float(report[name]) == pytest.approx(k / n)
            np.testing.assert_array_equal(after[name][~mask[name]], 0.0)  # exactly zero
            assert np.all(after[name][mask[name]] != 0)
            if bool(is_pruning_step(SCHEDULE, step)):
                # the pruned set is the k smallest magnitudes of the weights the step saw
                before = np.abs(flat(history[step])[name]).ravel()
                want = np.zeros(n, bool)
                want[np.argsort(before, kind="stable")[:k]] = True
                np.testing.assert_array_equal(~mask[name].ravel(), want)
        total = sum(after[name].size for name in PRUNABLE)
        pruned = sum(int((~mask[name]).sum()) for name in PRUNABLE)
        assert float(report["global"]) == pytest.approx(pruned / total)


def test_global_sparsity_follows_schedule_and_prunes_smallest_overall():
    optimizer = gradual_magnitude_pruning(optax.adam(0.05), SCHEDULE, scope="global")
    history, masks, _ = run(optimizer, toy_params())
    total = sum(np.size(flat(history[0])[name]) for name in PRUNABLE)
    layer_sparsities = set()
    for step in range(NUM_STEPS):
        mask = flat(masks[step])
        k = _round(expected_sparsity(step) * total)
        pruned = np.concatenate([~mask[name].ravel() for name in PRUNABLE])
        assert int(pruned.sum()) == k, step
        report = sparsity_of(history[step + 1], masks[step])
        assert float(report["global"]) == pytest.approx(k / total)
        layer_sparsities.update(round(float(report[name]), 4) for name in PRUNABLE)
        if bool(is_pruning_step(SCHEDULE, step)):
            before = np.concatenate([np.abs(flat(history[step])[name]).ravel() for name in PRUNABLE])
            want = np.zeros(total, bool)
            want[np.argsort(before, kind="stable")[:k]] = True
            np.testing.assert_array_equal(pruned, want)
    assert len(layer_sparsities) > len(set(expected_sparsity(s) for s in range(NUM_STEPS)))  # layers differ


def test_kept_and_non_prunable_weights_follow_the_dense_run_and_pruned_stay_zero():
    dense_history, _, _ = run(optax.adam(0.05), toy_params())
    history, masks, _ = run(gradual_magnitude_pruning(optax.adam(0.05), SCHEDULE), toy_params())
    dense, sparse, mask = flat(dense_history[-1]), flat(history[-1]), flat(masks[-1])
    for name, value in sparse.items():
        if name in mask:
            np.testing.assert_allclose(value[mask[name]], dense[name][mask[name]], rtol=1e-6)
            np.testing.assert_array_equal(value[~mask[name]], 0.0)
        else:
            np.testing.assert_allclose(value, dense[name], rtol=1e-6)  # untouched by pruning
    # masks stop changing after the end step; pruned weights stayed zero through the Adam steps after it
    for step in range(SCHEDULE.end_step, NUM_STEPS):
        for name in PRUNABLE:
            np.testing.assert_array_equal(flat(masks[step])[name], mask[name])
            np.testing.assert_array_equal(flat(history[step + 1])[name][~mask[name]], 0.0)


def test_masks_only_shrink_even_with_ties_at_zero():
    params = toy_params()
    params["dense1"]["kernel"] = params["dense1"]["kernel"].at[0].set(0.0)  # 7 zeros before pruning
    _, masks, _ = run(gradual_magnitude_pruning(optax.sgd(0.01), SCHEDULE), params)
    for earlier, later in zip(masks, masks[1:]):
        for name in PRUNABLE:
            assert not np.any(flat(later)[name] & ~flat(earlier)[name])


def test_composes_with_chain_inject_hyperparams_and_jit():
    adam = optax.inject_hyperparams(optax.adam)(learning_rate=0.05)
    inner = optax.chain(optax.clip_by_global_norm(100.0), adam)
    optimizer = optax.chain(optax.scale_by_trust_ratio(), gradual_magnitude_pruning(inner, SCHEDULE))
    history, masks, state = run(optimizer, toy_params())
    assert float(optax.tree_utils.tree_get(state, "learning_rate")) == pytest.approx(0.05)
    final, mask = flat(history[-1]), flat(masks[-1])
    for name in PRUNABLE:
        assert int((~mask[name]).sum()) == _round(S1 * mask[name].size)
        np.testing.assert_array_equal(final[name][~mask[name]], 0.0)
    np.testing.assert_array_equal(flat(apply_masks(history[-1], state))[PRUNABLE[0]], final[PRUNABLE[0]])


def test_masks_are_reapplied_every_step():
    one_shot = pruning_schedule(final_sparsity=0.5, begin_step=0, end_step=0)
    optimizer = gradual_magnitude_pruning(optax.sgd(0.0), one_shot)
    params = toy_params()
    state = optimizer.init(params)
    updates, state = optimizer.update(jax.tree.map(jnp.ones_like, params), state, params)
    params = optax.apply_updates(params, updates)
    mask = pruning_masks(state)["dense2"]["kernel"]
    # an outside write (e.g. restoring dense weights) is undone by the next step and by apply_masks
    dense = jax.tree.map(lambda p: p + 1.0, params)
    assert np.all(np.asarray(flat(apply_masks(dense, state))["dense2/kernel"])[~np.asarray(mask)] == 0)
    updates, state = optimizer.update(jax.tree.map(jnp.ones_like, params), state, dense)
    again = optax.apply_updates(dense, updates)
    np.testing.assert_array_equal(np.asarray(again["dense2"]["kernel"])[~np.asarray(mask)], 0.0)


def test_nnx_params_and_prunable_rules():
    class Tiny(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(10, 4, rngs=rngs)
            self.proj = nnx.Linear(4, 8, rngs=rngs)
            self.norm = nnx.LayerNorm(8, rngs=rngs)
            self.out = nnx.Linear(8, 3, rngs=rngs)

    _, params = nnx.split(Tiny(nnx.Rngs(0)), nnx.Param)
    schedule = pruning_schedule(final_sparsity=0.5, begin_step=0, end_step=0)
    state = gradual_magnitude_pruning(optax.adam(1e-3), schedule).init(params)
    assert set(flat(pruning_masks(state))) == {"proj/kernel", "out/kernel"}
    only_out = gradual_magnitude_pruning(optax.adam(1e-3), schedule, prunable=r"^out/kernel$").init(params)
    assert set(flat(pruning_masks(only_out))) == {"out/kernel"}
    assert default_prunable("blocks/0/mlp/kernel", jnp.zeros((2, 2)))
    assert not default_prunable("decoder/embed_positions", jnp.zeros((2, 2)))
    assert not default_prunable("norm/scale", jnp.zeros((2,)))

    grads = jax.tree.map(jnp.ones_like, params)
    optimizer = gradual_magnitude_pruning(optax.adam(1e-3), schedule)
    updates, state = jax.jit(optimizer.update)(grads, optimizer.init(params), params)
    report = sparsity_of(optax.apply_updates(params, updates), pruning_masks(state))
    assert float(report["proj/kernel"]) == 0.5 and float(report["out/kernel"]) == 0.5
    assert sorted(report) == ["global", "out/kernel", "proj/kernel"]


def test_bad_input_is_named():
    params = toy_params()
    optimizer = gradual_magnitude_pruning(optax.sgd(0.1), SCHEDULE)
    with pytest.raises(ValueError, match="needs params"):
        optimizer.update(params, optimizer.init(params))
    with pytest.raises(ValueError, match="no parameter is prunable"):
        gradual_magnitude_pruning(optax.sgd(0.1), SCHEDULE, prunable="nothing_matches").init(params)
    with pytest.raises(ValueError, match="scope"):
        gradual_magnitude_pruning(optax.sgd(0.1), SCHEDULE, scope="row")
    with pytest.raises(ValueError, match="PruningSchedule"):
        gradual_magnitude_pruning(optax.sgd(0.1), 0.5)
    with pytest.raises(ValueError, match="expected one"):
        pruning_masks(optax.adam(0.1).init(params))
