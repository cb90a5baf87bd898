"""Tiny Llama-, Qwen2-, GPT-2- and ModernBERT-architecture models built on the fly, saved the way
their real checkpoints ship: a language model (no classification head, so `score`/`classifier` is
newly initialised at load) and, for the decoders, a byte-level BPE tokenizer without a pad token."""

from __future__ import annotations

from pathlib import Path

from conftest import FILLER, WORDS

DECODERS = ("llama", "qwen2", "gpt2")
ARCHITECTURES = DECODERS + ("modernbert",)


def _corpus() -> list[str]:
    return [" ".join(FILLER + sum(WORDS.values(), []))] * 4 + [w for ws in WORDS.values() for w in ws]


def _decoder_tokenizer(model_type: str):
    """Byte-level BPE as Llama/Qwen2/GPT-2 use; BOS/EOS but no pad token, as they all ship."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bos, eos = ("<|endoftext|>", "<|endoftext|>") if model_type == "gpt2" else ("<s>", "</s>")
    specials = sorted({bos, eos}, key=[bos, eos].index)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(
        _corpus(),
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    if model_type == "llama":  # Llama prepends BOS; GPT-2 and Qwen2 add nothing
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
        )
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, model_max_length=128)
    assert fast.pad_token is None
    return fast


def _modernbert_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        _corpus(),
        trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
    )
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )


def build_tiny(folder: Path, model_type: str) -> Path:
    """Save a 2-layer, 32-wide language model of `model_type` and its tokenizer in `folder`."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _modernbert_tokenizer() if model_type == "modernbert" else _decoder_tokenizer(model_type)
    vocab = len(tokenizer)
    common = {"vocab_size": vocab, "initializer_range": 0.02}
    if model_type == "gpt2":
        model = tf.GPT2LMHeadModel(
            tf.GPT2Config(
                n_embd=32,
                n_layer=2,
                n_head=2,
                n_positions=128,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **common,
            )
        )
    elif model_type in ("llama", "qwen2"):
        config_class, model_class = (
            (tf.LlamaConfig, tf.LlamaForCausalLM) if model_type == "llama" else (tf.Qwen2Config, tf.Qwen2ForCausalLM)
        )
        config = config_class(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=128,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=None,
            tie_word_embeddings=False,
            **common,
        )
        model = model_class(config)
    elif model_type == "modernbert":
        config = tf.ModernBertConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=128,
            local_attention=16,
            global_attn_every_n_layers=1,
            pad_token_id=tokenizer.pad_token_id,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
            **common,
        )
        model = tf.ModernBertForMaskedLM(config)
    else:
        raise ValueError(model_type)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
