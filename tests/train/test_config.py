import json

import pytest

from jaxspeech.train.config import ConfigError, load_config, read_saved_config, save_config

CONFIG = '''
import ml_collections
def get_config():
    c = ml_collections.ConfigDict()
    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-3
    c.optim.name = "adam"
    c.train = ml_collections.ConfigDict()
    c.train.steps = 10
    c.train.bf16 = False
    c.train.shape = (2, 3)
    return c
'''


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "cfg.py"
    path.write_text(CONFIG)
    return path


def test_overrides_are_typed(config_file):
    c = load_config(config_file, ["--config.optim.lr=3", "--config.train.bf16=true", "--config.optim.name=sgd",
                                  "--config.train.shape=(4, 5)", "--config.train.steps=7"])
    assert c.optim.lr == 3.0 and isinstance(c.optim.lr, float)
    assert c.train.bf16 is True and c.optim.name == "sgd" and c.train.shape == (4, 5) and c.train.steps == 7


@pytest.mark.parametrize("override, message", [
    ("--config.optim.lrr=1", "unknown config key .*Did you mean \"lr\""),
    ("--config.optimizer.lr=1", "unknown config key 'optimizer.lr'"),
    ("--config.train.steps=ten", "train.steps=ten"),
    ("--config.train.bf16=maybe", "Non-boolean argument"),
    ("--optim.lr=1", "must look like"),
])
def test_bad_overrides_fail_loudly(config_file, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(config_file, [override])


def test_config_is_locked(config_file):
    c = load_config(config_file)
    with pytest.raises(AttributeError):
        c.optim.momentum = 0.9


def test_saved_config_round_trips(config_file, tmp_path):
    c = load_config(config_file, ["--config.optim.lr=0.5"])
    save_config(c, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["optim"]["lr"] == 0.5
    assert read_saved_config(tmp_path).optim.lr == 0.5
    with pytest.raises(ConfigError, match="no config.json"):
        read_saved_config(tmp_path / "missing")


def test_missing_file_and_missing_get_config(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.py")
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match="no get_config"):
        load_config(tmp_path / "empty.py")


def test_shipped_configs_load():
    c = load_config("configs/asr_ctc_tiny.py", ["--config.train.steps=3"])
    assert c.recipe == "ctc_asr" and c.train.steps == 3
