"""A TTS student's teacher (``objective.teacher``: CD, ECT and CTM start from an EDM run): the teacher
workdir read back and checked against the student's config, the student's step-0 params taken from the
teacher's, and the teacher's frozen decoder network for the losses that distil it.

The student must be the teacher's architecture (same encoder, prosody parts and decoder network) on the
same data: it keeps the teacher's vocabulary, speakers and mel statistics.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jaxspeech.models import tts
from jaxspeech.objectives import Network
from jaxspeech.train.config import ConfigError, read_saved_config
from jaxspeech.train.run_setup import optimizer_from_config, restore_state

log = logging.getLogger(__name__)

SHARED_FILES = ("vocab.json", "speakers.json")
# Model settings a student shares with its teacher (the decoder's objective sections may differ).
SHARED_MODEL = ("n_mels", "vocab_size", "num_speakers", "break_token", "mel_mean", "mel_std", "encoder",
                "duration_predictor", "intonation", "pitch")
SHARED_DECODER = ("network", "speaker_dim", "noise_around_mu", "unet", "dit")
SHARED_LEVELS = ("sigma_data", "sigma_min", "sigma_max", "rho")


class Teacher(NamedTuple):
    workdir: str
    config: ml_collections.ConfigDict  # the teacher run's whole saved config
    params: nnx.State
    network: Network  # its decoder network, deterministic, params closed over


def _as_plain(value: Any) -> Any:
    """A config value as its saved JSON reads back (tuples become lists), for comparison."""
    return json.loads(json.dumps(value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value))


def read_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a TTS run saved in ``workdir``, its model config with the fields added since
    (``tts.upgrade_saved``), locked."""
    config = read_saved_config(workdir)
    with config.unlocked():
        config.model = tts.upgrade_saved(config.model)
    return config


def load_teacher(config: ml_collections.ConfigDict) -> Teacher | None:
    """The teacher the student's objective names, or None when it needs none. Raises a ConfigError when
    ``decoder.<objective>.teacher_workdir`` is unset, missing, or holds a run of another objective or
    another noise-level setup."""
    objective, objective_config = tts.objective_of(config.model)
    if objective.teacher is None:
        return None
    workdir = objective_config.teacher_workdir
    key = f"model.decoder.{objective.name}.teacher_workdir"
    if not workdir:
        raise ConfigError(f"the {objective.name} objective starts from a trained {objective.teacher} model: set "
                          f"--config.{key} to its workdir")
    if not os.path.isfile(os.path.join(workdir, "config.json")):
        raise ConfigError(f"{key}={workdir!r} holds no trained run (no config.json)")
    teacher_config = read_run_config(workdir)
    teacher_objective, teacher_levels = tts.objective_of(teacher_config.model)
    if teacher_objective.name != objective.teacher:
        raise ConfigError(f"{key}={workdir!r} was trained with the {teacher_objective.name} objective; the "
                          f"{objective.name} objective needs a {objective.teacher} teacher")
    for name in SHARED_LEVELS:
        if teacher_levels[name] != objective_config[name]:
            raise ConfigError(f"the teacher at {workdir} has {name}={teacher_levels[name]}, the student "
                              f"{objective.name}.{name}={objective_config[name]}: they must agree")
    graphdef, params = tts.init(teacher_config.model, jax.random.key(0))
    state = restore_state(workdir, teacher_config, params, optimizer_from_config(teacher_config))
    log.info("teacher: %s (%s, step %d)", workdir, teacher_objective.name, int(state.step))
    return Teacher(workdir, teacher_config, state.params, tts.decoder_network(graphdef, state.params))


def adopt_teacher(config: ml_collections.ConfigDict, teacher: Teacher, workdir: str) -> None:
    """Gives the student the teacher's data setup: its vocabulary and speaker files in ``workdir`` (unless
    the student's run already has them) and its model settings, which must otherwise match."""
    student, teacher_model = config.model, teacher.config.model
    for name in ("vocab_size", "num_speakers", "break_token", "mel_mean", "mel_std"):
        student[name] = teacher_model[name]
    mismatched = [name for name in SHARED_MODEL if _as_plain(student[name]) != _as_plain(teacher_model[name])]
    mismatched += [f"decoder.{name}" for name in SHARED_DECODER
                   if _as_plain(student.decoder[name]) != _as_plain(teacher_model.decoder[name])]
    if mismatched:
        raise ConfigError(f"the student's model differs from its teacher's ({teacher.workdir}) in {mismatched}: "
                          "a student keeps the teacher's architecture")
    if config.data.dir != teacher.config.data.dir or config.data.preset != teacher.config.data.preset:
        raise ConfigError(f"the student trains on {config.data.dir} ({config.data.preset}), its teacher on "
                          f"{teacher.config.data.dir} ({teacher.config.data.preset}): use the teacher's data")
    for name in SHARED_FILES:
        if not os.path.exists(os.path.join(workdir, name)):
            shutil.copyfile(os.path.join(teacher.workdir, name), os.path.join(workdir, name))


def params_from_teacher(student: nnx.State, teacher: nnx.State) -> nnx.State:
    """The student's step-0 params: the teacher's, leaf by leaf. A student leaf with more rows (axis 0)
    than the teacher's, e.g. CTM's time embedding reading a second level, keeps the teacher's rows and
    zeros after them, so the new input starts switched off; any other difference is an error."""

    def adopt(path, mine, theirs):
        if mine.shape == theirs.shape:
            return jnp.asarray(theirs, mine.dtype)
        if mine.ndim == theirs.ndim and mine.shape[1:] == theirs.shape[1:] and mine.shape[0] > theirs.shape[0]:
            return jnp.zeros_like(mine).at[: theirs.shape[0]].set(theirs)
        raise ValueError(f"parameter {jax.tree_util.keystr(path)} is {mine.shape} in the student but {theirs.shape} "
                         "in the teacher")

    return jax.tree_util.tree_map_with_path(adopt, student, teacher)


def student_config(config: ml_collections.ConfigDict, objective: str) -> ml_collections.ConfigDict:
    """A copy of the run config ``config`` (a teacher's, or any denoising objective's) whose decoder is
    trained with ``objective`` instead: the same architecture and data, the noise-level setup
    (sigma_data, sigma_min, sigma_max, rho) carried over, and the new objective's sampler defaults
    (``synth.sampler``). The teacher workdir, when the objective needs one, is still to be set."""
    student = ml_collections.ConfigDict(config.to_dict())
    previous = tts.objective_of(config.model)[1]
    student.model = tts.with_objective(config.model, objective)
    section = student.model.decoder[objective]
    for name in SHARED_LEVELS:
        if name in previous and name in section:
            section[name] = previous[name]
    student.synth.sampler = ml_collections.ConfigDict(tts.objective_of(student.model)[0].sampler_defaults())
    return student
