"""Import of Matcha-TTS acoustic checkpoints (the Lightning ``.ckpt`` the ``matcha-tts`` package writes)
into jaxspeech's acoustic model, and Matcha's symbol table as a jaxspeech tokenizer.

The checkpoint's ``hyper_parameters`` (``n_vocab``, ``n_spks``, ``encoder``, ``decoder``, ``cfm``,
``data_statistics``) become the acoustic model config (:func:`model_config`): Matcha's encoder
(``encoder.architecture = "matcha"``), its U-Net blocks (``decoder.unet.block = "matcha"``), no
intonation tokens, no decoder speaker embedding, flow matching with its sigma_min. ``state_dict``
tensors map one to one (:func:`params_from_state_dict`): Conv1d [out, in, k] -> [k, in, out], 1x1
convolutions and Linear layers -> [in, out], ConvTranspose1d [in, out, k] -> [k, in, out] flipped
along k (lax's transposed convolution does not flip the kernel, torch's does), LayerNorm ``gamma``
/ ``weight`` -> ``scale``. Loss-only buffers are skipped.

The text front end: Matcha reads eSpeak NG IPA (phonemizer, stress and punctuation kept) one
character per symbol, with a blank (id 0) between symbols and at both ends. jaxspeech's phrased
phonemes (the same eSpeak NG IPA, words joined by ``|``) map onto that table with ``|`` in the
place of Matcha's space (:func:`matcha_tokenizer`).

Supported: single-speaker checkpoints (LJSpeech's) with Matcha's default blocks (RoPE encoder with
prenet and conv(3) feed-forwards; transformer U-Net blocks with SnakeBeta). Multi-speaker ones
(VCTK: the speaker embedding concatenated to the encoder input) and conformer blocks raise
CheckpointError. Outputs agree with the package to float32 precision when a batch has no padding;
Matcha lets padded frames into GroupNorm statistics and weights padded keys by e^-1 (its 0/1 mask is
added to the attention logits), jaxspeech masks both, so padded rows differ slightly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np
from flax import nnx

from jaxspeech.models.checkpoint_import import REVERSED, SAME, CheckpointError, Layout, params_from_torch
from jaxspeech.models.tts.config import default_config
from jaxspeech.models.tts.encoder import MATCHA_FF_KERNEL
from jaxspeech.models.tts.model import AcousticModel
from jaxspeech.text.phrasing import BREAK
from jaxspeech.text.tokenizer import BLANK, Tokenizer

# Matcha-TTS's symbols (matcha/text/symbols.py, after Tacotron): pad, punctuation, ASCII letters, IPA.
MATCHA_SYMBOLS = (
    ["_"] + list(';:,.!?¡¿—…"«»“” ') + list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
    + list("ɑɐɒæɓʙβɔɕçɗɖðʤəɘɚɛɜɝɞɟʄɡɠɢʛɦɧħɥʜɨɪʝɭɬɫɮʟɱɯɰŋɳɲɴøɵɸθœɶʘɹɺɾɻʀʁɽʂʃʈʧʉʊʋⱱʌɣɤʍχʎʏʑʐʒʔʡʕʢ")
    + list("ǀǁǂǃˈˌːˑʼʴʰʱʲʷˠˤ˞↓↑→↗↘'̩'ᵻ")
)
# Matcha's synthesis settings (its CLI): 10 Euler steps from noise at temperature 0.667, ceil durations.
SYNTH_DEFAULTS = dict(sampler=dict(steps=10, method="euler", temperature=0.667, sway=False), guidance=0.0,
                      duration_rounding="ceil", max_symbols=400, batch_size=16, vocoder="griffin-lim",
                      griffin_lim=dict(iterations=32))
MEL_PRESET = "tts_22k"  # Matcha's LJSpeech mels: HiFi-GAN's 80-band 22.05 kHz log-mel
_SKIPPED = ("mel_mean", "mel_std")  # buffers read into the config


def matcha_tokenizer() -> Tokenizer:
    """Matcha's symbol table (ids unchanged) as a character tokenizer of jaxspeech's phrased phonemes:
    the pad is the blank, ``|`` stands for the space, blanks are interleaved (Matcha's add_blank).
    Matcha lists ``'`` twice and encodes it with the later id; the earlier one gets a name no text holds."""
    symbols = [BLANK] + [BREAK if s == " " else s for s in MATCHA_SYMBOLS[1:]]
    last = {s: i for i, s in enumerate(symbols)}
    symbols = [s if last[s] == i else f"<unused {i}>" for i, s in enumerate(symbols)]
    return Tokenizer("chars", tuple(symbols), blank_between=True)


def _plain(value: Any) -> Any:
    """Hyperparameters as plain dicts and lists (OmegaConf containers, namespaces and mappings alike)."""
    if hasattr(value, "_content") and hasattr(value, "_get_node"):  # an OmegaConf container
        from omegaconf import OmegaConf

        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "__dict__") and not isinstance(value, (int, float, str, bool)):
        return {k: _plain(v) for k, v in vars(value).items()}
    return value


def model_config(hparams: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """The acoustic model config of a Matcha-TTS checkpoint's ``hyper_parameters``.

    Raises CheckpointError naming what jaxspeech does not support.
    """
    h = _plain(hparams)
    try:
        enc, dp = h["encoder"]["encoder_params"], h["encoder"]["duration_predictor_params"]
        decoder, cfm = h["decoder"], h["cfm"]
        n_vocab, n_spks, n_feats = h["n_vocab"], h["n_spks"], h["n_feats"]
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"not a Matcha-TTS checkpoint: hyper_parameters lack {err}") from None
    unsupported = []
    if n_spks != 1:
        unsupported.append(f"n_spks={n_spks} (multi-speaker checkpoints concatenate the speaker to the encoder "
                           "input; only single-speaker ones are supported)")
    if not enc.get("prenet", True):
        unsupported.append("an encoder without prenet")
    if enc.get("kernel_size", MATCHA_FF_KERNEL) != MATCHA_FF_KERNEL:
        unsupported.append(f"encoder kernel_size={enc['kernel_size']} (supported: {MATCHA_FF_KERNEL})")
    if enc["filter_channels"] % enc["n_channels"]:
        unsupported.append(f"encoder filter_channels={enc['filter_channels']} not a multiple of n_channels")
    if decoder.get("act_fn", "snake") != "snakebeta":
        unsupported.append(f"decoder act_fn={decoder.get('act_fn', 'snake')!r} (supported: 'snakebeta')")
    blocks = {decoder.get(f"{part}_block_type", "transformer") for part in ("down", "mid", "up")}
    if blocks != {"transformer"}:
        unsupported.append(f"decoder block types {sorted(blocks)} (supported: transformer)")
    if cfm.get("solver", "euler") != "euler":
        unsupported.append(f"cfm solver {cfm['solver']!r}")
    if n_feats != 80:
        unsupported.append(f"n_feats={n_feats} (the {MEL_PRESET} mels have 80 bands)")
    if unsupported:
        raise CheckpointError("unsupported Matcha-TTS checkpoint: " + "; ".join(unsupported))
    stats = h.get("data_statistics") or {"mel_mean": 0.0, "mel_std": 1.0}
    c = default_config("flow_matching")
    c.update(dict(n_mels=n_feats, vocab_size=n_vocab, num_speakers=1, break_token=MATCHA_SYMBOLS.index(" "),
                  mel_mean=float(stats["mel_mean"]), mel_std=float(stats["mel_std"])))
    c.encoder.update(dict(d_model=enc["n_channels"], num_layers=enc["n_layers"], num_heads=enc["n_heads"],
                          ff_mult=enc["filter_channels"] // enc["n_channels"], prenet_layers=3, prenet_kernel=5,
                          dropout=enc["p_dropout"], architecture="matcha"))
    c.duration_predictor.update(dict(channels=dp["filter_channels_dp"], kernel=dp["kernel_size"],
                                     dropout=dp["p_dropout"]))
    c.intonation.num_tokens = 0
    channels = tuple(decoder.get("channels", (256, 256)))
    c.decoder.update(dict(speaker_dim=0, cond_drop_prob=0.0))
    c.decoder.unet.update(dict(channels=channels, time_dim=4 * channels[0], num_blocks=decoder.get("n_blocks", 1),
                               num_mid_blocks=decoder.get("num_mid_blocks", 2), num_heads=decoder.get("num_heads", 4),
                               ff_mult=4, norm_groups=8, dropout=decoder.get("dropout", 0.05), block="matcha",
                               head_dim=decoder.get("attention_head_dim", 64)))
    c.decoder.flow_matching.sigma_min = float(cfm.get("sigma_min", 1e-4))
    return c


_POINTWISE = Layout(lambda v: v[:, :, 0].T, lambda s: (s[1], s[0], 1))  # Conv1d k=1 [out, in, 1] <-> [in, out]
_TRANSPOSED = Layout(lambda v: np.transpose(v, (2, 0, 1))[::-1], lambda s: (s[1], s[2], s[0]))  # [in, out, k]
_BLOCK = {"attention_norm": "norm1", "query": "attn1.to_q", "key": "attn1.to_k", "value": "attn1.to_v",
          "out": "attn1.to_out.0", "ff_norm": "norm3", "ff_in": "ff.net.0.proj", "ff_out": "ff.net.2"}
_ENCODER_LAYER = {"query": "attn_layers.{}.conv_q", "key": "attn_layers.{}.conv_k", "value": "attn_layers.{}.conv_v",
                  "out": "attn_layers.{}.conv_o", "ff_in": "ffn_layers.{}.conv_1", "ff_out": "ffn_layers.{}.conv_2",
                  "attention_norm": "norm_layers_1.{}", "ff_norm": "norm_layers_2.{}"}


def _leaf(module: str, leaf: str, kernel: Layout, norm: tuple[str, str] | None = None) -> tuple[str, Layout]:
    """Our ``leaf`` of ``module`` as a torch tensor name and layout. kernel: the kernel's layout;
    norm: torch's names of a norm module's scale and bias (default weight, bias)."""
    if leaf == "kernel":
        return f"{module}.weight", kernel
    names = {"scale": (norm or ("weight",))[0], "bias": norm[1] if norm else "bias"}
    return f"{module}.{names[leaf]}", SAME


def _group_norm_or_conv(module: str, rest: list[str]) -> tuple[str, Layout]:
    """A Block1D's conv (``conv.{kernel,bias}`` -> ``block.0``) or GroupNorm (``norm_*`` -> ``block.1``)."""
    if rest[0] in ("norm_scale", "norm_bias"):
        return f"{module}.block.1.{'weight' if rest[0] == 'norm_scale' else 'bias'}", SAME
    return _leaf(f"{module}.block.0", rest[1], REVERSED)


def _decoder_tensor(parts: list[str], levels: int) -> tuple[str, Layout]:
    """Torch name (below ``decoder.estimator``) and layout of a decoder-network path below ``decoder.net``."""
    head, *rest = parts
    if head in ("down", "mid", "up"):
        level, kind, *rest = rest
        prefix = f"{head}_blocks.{level}"
        if kind == "resnet":
            module, *rest = rest
            if module in ("block1", "block2"):
                return _group_norm_or_conv(f"{prefix}.0.{module}", rest)
            torch_module = {"residual": "res_conv", "time_proj": "mlp.1"}[module]
            return _leaf(f"{prefix}.0.{torch_module}", rest[0], _POINTWISE if module == "residual" else REVERSED)
        block, module, *rest = rest  # transformers.{j}.{module}[.{leaf}]
        if module in ("log_alpha", "log_beta"):
            return f"{prefix}.1.{block}.ff.net.0.{module[4:]}", SAME
        return _leaf(f"{prefix}.1.{block}.{_BLOCK[module]}", rest[0], REVERSED)
    if head in ("down_convs", "up_convs"):
        level, leaf = rest
        module = f"{head[:-6]}_blocks.{level}.2"
        if int(level) == levels - 1:  # the last level's plain Conv1d
            return _leaf(module, leaf, REVERSED)
        return _leaf(f"{module}.conv", leaf, REVERSED if head == "down_convs" else _TRANSPOSED)
    if head == "time_embedding":
        return _leaf(f"time_mlp.{'linear_1' if rest[0] == 'hidden' else 'linear_2'}", rest[1], REVERSED)
    if head == "final_block":
        return _group_norm_or_conv("final_block", rest)
    return _leaf("final_proj", rest[0], _POINTWISE)


def _encoder_tensor(parts: list[str]) -> tuple[str, Layout]:
    """Torch name and layout of an encoder-side path (``encoder.*``, ``duration.*``)."""
    channel_norm = ("gamma", "beta")  # Glow-TTS's LayerNorm
    if parts[0] == "duration":
        if parts[1] == "proj":
            return _leaf("encoder.proj_w.proj", parts[2], _POINTWISE)
        _, _, kind, index, leaf = parts  # duration.body.{convs,norms}.{i}.{leaf}
        return _leaf(f"encoder.proj_w.{kind[:-1]}_{int(index) + 1}", leaf, REVERSED,
                     channel_norm if kind == "norms" else None)
    module, *rest = parts[1:]
    if module == "embed":
        return "encoder.emb.weight", SAME
    if module in ("mean_proj", "prenet_proj"):
        return _leaf("encoder.proj_m" if module == "mean_proj" else "encoder.prenet.proj", rest[0], _POINTWISE)
    if module == "prenet_convs":
        kind, index, leaf = rest
        return _leaf(f"encoder.prenet.{kind[:-1]}_layers.{index}", leaf, REVERSED,
                     channel_norm if kind == "norms" else None)
    _, index, layer_module, leaf = rest  # transformer.layers.{i}.{module}.{leaf}
    kernel = REVERSED if layer_module.startswith("ff_") else _POINTWISE
    return _leaf("encoder.encoder." + _ENCODER_LAYER[layer_module].format(index), leaf, kernel,
                 channel_norm if layer_module.endswith("_norm") else None)


def _torch_tensor(path: tuple, levels: int) -> tuple[str, Layout] | None:
    """The Matcha tensor name and layout of one of our param paths (None: not in a Matcha checkpoint)."""
    parts = [str(p) for p in path]
    if parts[:2] == ["encoder", "speaker"]:
        return None  # a single speaker: Matcha has none (ours stays zero)
    if parts[0] == "decoder":
        name, layout = _decoder_tensor(parts[2:], levels)
        return f"decoder.estimator.{name}", layout
    return _encoder_tensor(parts)


def params_from_state_dict(state_dict: Mapping[str, np.ndarray], config: Mapping[str, Any], *,
                           source: str = "checkpoint") -> tuple[nnx.GraphDef, nnx.State]:
    """A Matcha-TTS ``state_dict`` (torch names and layouts) -> (graphdef, params) of the acoustic
    model of ``config`` (:func:`model_config`). Raises CheckpointError listing every missing,
    unexpected and mis-shaped tensor (torch layout)."""
    model = nnx.eval_shape(lambda: AcousticModel(config, rngs=nnx.Rngs(params=0)))
    graphdef, abstract = nnx.split(model, nnx.Param)
    levels = len(config.decoder.unet.channels)
    tensors = {name: value for name, value in state_dict.items() if name not in _SKIPPED}
    return graphdef, params_from_torch(abstract, tensors, lambda path: _torch_tensor(path, levels),
                                       describe=f"{source} does not match the Matcha-TTS model of its hyper_parameters")


def _load_lightning_checkpoint(path: str) -> dict:
    """torch.load of a Lightning checkpoint with only tensors, plain containers and OmegaConf
    containers (Matcha saves its Hydra hyperparameters as such) allowed to unpickle."""
    import torch  # an optional dependency, needed only to read PyTorch files

    allowed, refused = [], []
    for name in torch.serialization.get_unsafe_globals_in_checkpoint(path):
        module, _, attribute = name.rpartition(".")
        if module.split(".")[0] == "omegaconf" or name in ("typing.Any", "collections.defaultdict", "builtins.dict",
                                                          "builtins.list", "builtins.int", "builtins.float",
                                                          "builtins.str", "builtins.bool", "builtins.tuple"):
            try:
                allowed.append(getattr(__import__(module, fromlist=[attribute]), attribute))
            except ImportError:
                raise CheckpointError(f"{path} stores its hyperparameters as OmegaConf containers: "
                                      "pip install omegaconf to read it") from None
        else:
            refused.append(name)
    if refused:
        raise CheckpointError(f"{path} holds objects other than tensors and configs, not loaded: {', '.join(refused)}")
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def import_matcha_checkpoint(path: str | os.PathLike) -> tuple[ml_collections.ConfigDict, nnx.GraphDef, nnx.State]:
    """(acoustic model config, graphdef, params) of a Matcha-TTS Lightning checkpoint (``.ckpt``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no Matcha-TTS checkpoint at {path}")
    checkpoint = _load_lightning_checkpoint(path)
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict and hyper_parameters)")
    config = model_config(checkpoint["hyper_parameters"])
    state_dict = {name: value.detach().float().numpy() for name, value in checkpoint["state_dict"].items()}
    graphdef, params = params_from_state_dict(state_dict, config, source=path)
    return config, graphdef, params


def run_config(model: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A synthesis run config (``data.preset``, ``model``, ``synth``: Matcha's settings) for an imported model."""
    return ml_collections.ConfigDict(dict(recipe="tts_fm", data=dict(preset=MEL_PRESET), model=model,
                                          synth=SYNTH_DEFAULTS))
