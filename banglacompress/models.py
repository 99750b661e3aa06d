"""Building models (from scratch with a trained SentencePiece tokenizer, or from the hub / a local path),
and saving / loading model directories with their tokenizer, labels and thresholds."""
from __future__ import annotations

import io
import json
from pathlib import Path

import sentencepiece as spm
import torch
import transformers
from safetensors.torch import load_file
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers import models as token_models
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerFast
from transformers.pytorch_utils import prune_linear_layer

from .config import UserError, require
from .integrity import verify_checksums, write_checksums
from .pooling import apply_pooling, set_pooling
from .runtime import INFERENCE_FILE

transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()



# --------------------------------------------------------------------------- from-scratch architectures
def _bert(a):
    return dict(model_type="bert", hidden_size=a["hidden"], num_hidden_layers=a["layers"],
                num_attention_heads=a["heads"], intermediate_size=a["ffn"])


def _electra(a):
    return dict(model_type="electra", embedding_size=a.get("embedding", a["hidden"]), hidden_size=a["hidden"],
                num_hidden_layers=a["layers"], num_attention_heads=a["heads"], intermediate_size=a["ffn"])


def _distilbert(a):
    return dict(model_type="distilbert", dim=a["hidden"], n_layers=a["layers"], n_heads=a["heads"],
                hidden_dim=a["ffn"])


def _roberta(a):
    # XLM-R-shaped: position ids are offset by padding_idx + 1, so two extra positions are needed.
    return dict(model_type="xlm-roberta", hidden_size=a["hidden"], num_hidden_layers=a["layers"],
                num_attention_heads=a["heads"], intermediate_size=a["ffn"],
                bos_token_id=2, eos_token_id=3, max_position_embeddings=a["max_length"] + 2)


SCRATCH_FAMILIES = {"bert": _bert, "electra": _electra, "distilbert": _distilbert, "xlm-roberta": _roberta}
ARCH_KEYS = ("family", "layers", "hidden", "heads", "ffn", "vocab_size")
# scratch.tokenizer_model: the SentencePiece model type a scratch tokenizer trains (the first is the default).
TOKENIZER_MODELS = ("unigram", "bpe")


def tokenizer_model(arch: dict) -> str:
    """A scratch architecture's tokenizer_model: optional, so params files written before it still read."""
    return arch.get("tokenizer_model", TOKENIZER_MODELS[0])


def bpe_merges(vocab: dict[str, int], skip: set[str]) -> list[tuple[str, str]]:
    """The merge list of a SentencePiece BPE vocabulary, for the `tokenizers` BPE model: SentencePiece
    stores pieces, not merges, in the order it learned them, so every split of a piece into two pieces
    of the vocabulary is a merge of that piece's rank (as transformers' own converter does)."""
    merges = [(piece[:i], piece[i:], rank) for piece, rank in vocab.items() if piece not in skip
              for i in range(1, len(piece)) if piece[:i] in vocab and piece[i:] in vocab]
    merges.sort(key=lambda m: (m[2], vocab[m[0]], vocab[m[1]]))
    return [(left, right) for left, right, _ in merges]


def train_sentencepiece(texts: list[str], vocab_size: int,
                        model_type: str = "unigram") -> spm.SentencePieceProcessor:
    """A SentencePiece model (`model_type`: unigram or bpe) trained on `texts`.

    SentencePiece, not the `tokenizers` WordPiece/BPE trainers: those iterate a randomly seeded hash map
    while assigning ids and breaking ties, so every run gave another vocabulary and another teacher
    (docs/facts.md). SentencePiece with one thread trains the same model byte for byte in every
    process, so the same texts always give the same tokenizer; data-parallel ranks need not share it.
    No normalisation beyond NFC (clean_text already applied it): NFKC or lower-casing could change or
    strip Bangla vowel signs. Special tokens are control symbols: never produced from text."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type=model_type,
        character_coverage=1.0, normalization_rule_name="identity", num_threads=1, hard_vocab_limit=False,
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, pad_piece="[PAD]", unk_piece="[UNK]",
        control_symbols=["[CLS]", "[SEP]", "[MASK]"], input_sentence_size=0, shuffle_input_sentence=False,
        byte_fallback=False, minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def train_tokenizer(texts: list[str], vocab_size: int, max_length: int,
                    model_type: str = "unigram") -> PreTrainedTokenizerFast:
    """train_sentencepiece's model as a fast (Rust) tokenizer: the same pieces (a test checks), with
    BERT-style [CLS] / [SEP] around each text."""
    sp = train_sentencepiece(texts, vocab_size, model_type)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    if model_type == "unigram":
        tok = Tokenizer(token_models.Unigram([(p, sp.get_score(i)) for i, p in enumerate(pieces)],
                                             unk_id=sp.unk_id(), byte_fallback=False))
    else:
        vocab = {p: i for i, p in enumerate(pieces)}
        specials = {p for i, p in enumerate(pieces) if sp.is_control(i) or sp.is_unknown(i)}
        tok = Tokenizer(token_models.BPE(vocab, bpe_merges(vocab, specials), unk_token="[UNK]", fuse_unk=True))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_length)


def label_config(meta: dict) -> dict:
    names = meta["label_names"] if meta["task"] != "binary" else meta["label_names"][:1]
    return dict(num_labels=meta["num_labels"], id2label=dict(enumerate(names)),
                label2id={n: i for i, n in enumerate(names)},
                problem_type="single_label_classification" if meta["task"] == "multiclass"
                else "multi_label_classification")


def check_arch(name: str, arch: dict) -> None:
    missing = [k for k in ARCH_KEYS if k not in arch]
    require(not missing, f"{name}.scratch is missing {missing}")
    require(arch["family"] in SCRATCH_FAMILIES,
            f"{name}.scratch.family={arch['family']!r} is not supported; choose one of {list(SCRATCH_FAMILIES)}")
    require(arch["hidden"] % arch["heads"] == 0,
            f"{name}.scratch.hidden={arch['hidden']} must be divisible by heads={arch['heads']}")
    require(tokenizer_model(arch) in TOKENIZER_MODELS,
            f"{name}.scratch.tokenizer_model={tokenizer_model(arch)!r} is not supported; choose one of "
            f"{list(TOKENIZER_MODELS)}")


def tokenizer_for(arch: dict, texts: list[str], max_length: int) -> PreTrainedTokenizerFast:
    """The tokenizer a scratch architecture trains on `texts`: its vocab_size and tokenizer_model."""
    return train_tokenizer(texts, arch["vocab_size"], max_length, tokenizer_model(arch))


def build_scratch(arch: dict, meta: dict, train_texts: list[str], max_length: int, dropout: float = 0.1,
                  group: str = "teacher"):
    tokenizer = tokenizer_for(arch, train_texts, max_length)
    return build_scratch_with_tokenizer(arch, meta, tokenizer, max_length, dropout, group), tokenizer


# The config fields that hold a transformer's dropout: BERT, ELECTRA, XLM-R, DeBERTa name them like the first two,
# DistilBERT like the last two.
DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")


def with_dropout(config, dropout: float, group: str):
    """config with every dropout field its family has set to `dropout`, so that <group>.dropout applies to a hub,
    local or pretrained model as it does to a scratch one (from_pretrained alone keeps the saved config's)."""
    require(isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0 <= dropout < 1,
            f"{group}.dropout={dropout!r} must be a number in [0, 1)")
    fields = [k for k in DROPOUT_FIELDS if k in config.to_dict()]
    require(fields, f"{group}.dropout cannot be set on model type {config.model_type!r}: its config has none of "
                    f"{list(DROPOUT_FIELDS)}")
    for field in fields:
        setattr(config, field, dropout)
    return config


def load_pretrained(name_or_path: str, meta: dict, max_length: int, dropout: float = 0.1, group: str = "teacher"):
    """Hub id or local directory, with <group>.dropout; a fresh classification head sized for this task."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        config = with_dropout(AutoConfig.from_pretrained(name_or_path, **label_config(meta)), dropout, group)
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, config=config,
                                                                   ignore_mismatched_sizes=True)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"cannot load model {name_or_path!r}: {first} (offline? use a local path, or "
                        "model: scratch)") from None
    tokenizer.model_max_length = max_length
    return model, tokenizer


def build_model(group: str, cfg: dict, meta: dict, train_texts: list[str], max_length: int, tokenizer=None):
    """`cfg` is a params group with `model` ("scratch", a hub id or a path) and `scratch` (architecture).
    A scratch model trains its own SentencePiece on train_texts unless a `tokenizer` is given."""
    source = cfg.get("model", "scratch")
    if source == "scratch":
        check_arch(group, cfg.get("scratch") or {})
        if tokenizer is None:
            model, tokenizer = build_scratch(cfg["scratch"], meta, train_texts, max_length, cfg.get("dropout", 0.1),
                                             group)
        else:
            model = build_scratch_with_tokenizer(cfg["scratch"], meta, tokenizer, max_length, cfg.get("dropout", 0.1),
                                                 group)
    else:
        model, tokenizer = load_pretrained(source, meta, max_length, cfg.get("dropout", 0.1), group)
    return set_pooling(model, cfg.get("pooling", "cls"), f"{group}.pooling"), tokenizer


# --------------------------------------------------------------------------- model directories
def save_tokenizer(tokenizer, path: str | Path) -> None:
    """save_pretrained, with tokenizer.json written compact: the pretty-printed one spreads every
    (piece, score) pair of a unigram vocabulary over four lines, 1.8x the bytes (578 vs 321 kB at 8k)."""
    path = Path(path)
    tokenizer.save_pretrained(path)
    if getattr(tokenizer, "is_fast", False) and (path / "tokenizer.json").exists():
        tokenizer.backend_tokenizer.save(str(path / "tokenizer.json"), pretty=False)


def save_model_dir(path: str | Path, model, tokenizer, info: dict) -> None:
    """HF model + tokenizer + inference.json (task, label names, thresholds, max_length) + SHA256SUMS."""
    path = Path(path)
    model.save_pretrained(path)
    save_tokenizer(tokenizer, path)
    (path / INFERENCE_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_checksums(path)


def load_model_dir(path: str | Path, *, attn_implementation: str | None = None):
    """FP32 model directory -> (model in eval mode, tokenizer, inference info)."""
    path = Path(path)
    require((path / INFERENCE_FILE).exists(), f"{path} is not a model directory from this pipeline "
                                              f"(no {INFERENCE_FILE}); run the stage that writes it")
    verify_checksums(path)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = from_pretrained_pruned(path, **kwargs).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    info = json.loads((path / INFERENCE_FILE).read_text(encoding="utf-8"))
    return model, tokenizer, info


def encoder_linears(model) -> dict[str, torch.nn.Linear]:
    """The Linear layers inside the transformer blocks: what pruning and KD layer maps act on.
    Embeddings, pooler and the classification head are excluded."""
    base = getattr(model, model.base_model_prefix)
    prefix = model.base_model_prefix
    return {f"{prefix}.{name}": module for name, module in base.named_modules()
            if isinstance(module, torch.nn.Linear) and ("layer." in name or "layers." in name)}


def count_params(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    embedding = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    return {"params": total, "nonzero_params": nonzero, "non_embedding_params": total - embedding}


# --------------------------------------------------------------------------- structured-pruned shapes
# transformers 5 has no prune_heads, so a model whose heads / FFN neurons were removed cannot be
# rebuilt by from_pretrained: config.json keeps the nominal sizes, and `pruned_shapes` (written by
# structured pruning) records the kept heads and FFN width of every block so the loader can shrink
# the freshly built model before loading the weights.
PRUNED_SHAPES_KEY = "pruned_shapes"

# Where the attention projections and the FFN live inside one transformer block.
_BLOCK_LAYOUTS = {
    # BERT, ELECTRA, XLM-R (RoBERTa layout): the heads are sliced out of query/key/value rows and
    # attention.output.dense columns; the FFN is intermediate.dense -> output.dense.
    "bert": {"attention": "attention.self", "q": "attention.self.query", "k": "attention.self.key",
             "v": "attention.self.value", "o": "attention.output.dense", "up": "intermediate.dense",
             "down": "output.dense"},
    "distilbert": {"attention": "attention", "q": "attention.q_lin", "k": "attention.k_lin",
                   "v": "attention.v_lin", "o": "attention.out_lin", "up": "ffn.lin1", "down": "ffn.lin2"},
}


def encoder_blocks(model) -> list:
    """The transformer blocks, in order (encoder.layer for BERT/ELECTRA/XLM-R, transformer.layer for DistilBERT)."""
    base = getattr(model, model.base_model_prefix)
    stack = base.encoder if hasattr(base, "encoder") else base.transformer
    return list(stack.layer)


def block_layout(block) -> dict:
    return _BLOCK_LAYOUTS["distilbert" if hasattr(block, "ffn") else "bert"]


def block_shape(block) -> dict:
    """Heads and FFN width a block has now (read from the weights, not from the config)."""
    parts = block_layout(block)
    head_size = block.get_submodule(parts["attention"]).attention_head_size
    return {"heads": block.get_submodule(parts["q"]).out_features // head_size,
            "intermediate": block.get_submodule(parts["up"]).out_features}


def shrink_block(block, keep_heads=None, keep_neurons=None) -> None:
    """Physically remove attention heads / FFN neurons from one block, keeping the given indices.

    Every family's attention reshapes with view(..., -1, head_size), so the number of heads follows
    the weight shapes; the module attributes are updated too so nothing reads a stale count."""
    parts = block_layout(block)
    if keep_heads is not None:
        attn = block.get_submodule(parts["attention"])
        d = attn.attention_head_size
        index = torch.cat([torch.arange(h * d, (h + 1) * d) for h in sorted(keep_heads)])
        for key, dim in (("q", 0), ("k", 0), ("v", 0), ("o", 1)):
            block.set_submodule(parts[key], prune_linear_layer(block.get_submodule(parts[key]), index, dim=dim))
        for attr in ("num_attention_heads", "n_heads"):
            if hasattr(attn, attr):
                setattr(attn, attr, len(keep_heads))
        if hasattr(attn, "all_head_size"):
            attn.all_head_size = len(keep_heads) * d
    if keep_neurons is not None:
        index = torch.as_tensor(sorted(keep_neurons), dtype=torch.long)
        for key, dim in (("up", 0), ("down", 1)):
            block.set_submodule(parts[key], prune_linear_layer(block.get_submodule(parts[key]), index, dim=dim))


def record_pruned_shapes(model) -> dict:
    """Store every block's head count and FFN width in the config (saved in config.json)."""
    shapes = [block_shape(b) for b in encoder_blocks(model)]
    record = {"heads": [s["heads"] for s in shapes], "intermediate": [s["intermediate"] for s in shapes]}
    setattr(model.config, PRUNED_SHAPES_KEY, record)
    return record


def apply_pruned_shapes(model):
    """Shrink a model built from a config with `pruned_shapes` to those shapes (values are placeholders:
    the saved weights are loaded next). No-op for an unpruned config. Returns the model."""
    record = getattr(model.config, PRUNED_SHAPES_KEY, None)
    if not record:
        return model
    blocks = encoder_blocks(model)
    require(len(record["heads"]) == len(blocks) == len(record["intermediate"]),
            f"config {PRUNED_SHAPES_KEY} lists {len(record['heads'])} blocks but the model has {len(blocks)}")
    for block, heads, width in zip(blocks, record["heads"], record["intermediate"]):
        now = block_shape(block)
        shrink_block(block, list(range(heads)) if heads != now["heads"] else None,
                     list(range(width)) if width != now["intermediate"] else None)
    return model


def from_pretrained_pruned(path: str | Path, **kwargs):
    """AutoModelForSequenceClassification.from_pretrained that also rebuilds structured-pruned
    shapes (config `pruned_shapes`) and re-attaches the recorded pooling (config `pooling`)."""
    path = Path(path)
    config = AutoConfig.from_pretrained(path)
    if not getattr(config, PRUNED_SHAPES_KEY, None):
        return apply_pooling(AutoModelForSequenceClassification.from_pretrained(path, **kwargs))
    model = apply_pruned_shapes(AutoModelForSequenceClassification.from_config(config, **kwargs))
    index = path / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else [
        "model.safetensors"]
    state = {}
    for name in files:
        state.update(load_file(path / name))
    model.load_state_dict(state, strict=True)  # strict: a shape or key mismatch is an error, never a silent re-init
    return apply_pooling(model).eval()


# --------------------------------------------------------------------------- scratch model on a given tokenizer
def scratch_config(arch: dict, tokenizer, max_length: int, dropout: float = 0.1, group: str = "teacher", **extra):
    """The transformers config of a scratch architecture on an existing tokenizer (its vocabulary, its pad id),
    with <group>.dropout checked and set like a loaded model's; `extra` adds fields (a classifier's labels)."""
    shape = SCRATCH_FAMILIES[arch["family"]]({**arch, "max_length": max_length})
    model_type = shape.pop("model_type")
    shape.setdefault("max_position_embeddings", max_length)
    return with_dropout(AutoConfig.for_model(model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                             **shape, **extra), dropout, group)


def build_scratch_with_tokenizer(arch: dict, meta: dict, tokenizer, max_length: int, dropout: float = 0.1,
                                 group: str = "teacher"):
    """Like build_scratch, but on an existing tokenizer (the teacher's) instead of a freshly trained
    SentencePiece: hidden / attention KD need the student to see the teacher's tokens. arch's vocab_size
    is ignored (the tokenizer decides it)."""
    return AutoModelForSequenceClassification.from_config(
        scratch_config(arch, tokenizer, max_length, dropout, group, **label_config(meta)))
