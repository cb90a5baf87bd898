"""Every tiny model the tests train, built on the fly with a tokenizer trained on the fixture words: one
builder for the BERT- and DistilBERT-shaped classifiers (`build_tiny_model`) and one for the Llama-,
Qwen2-, GPT-2- and ModernBERT-shaped language models saved as their checkpoints ship (`build_tiny`)."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = {
    "pos": ["great", "lovely", "happy", "wonderful", "excellent", "sunny", "bright", "delight", "cheerful", "superb"],
    "neg": ["awful", "terrible", "sad", "gloomy", "horrible", "dreary", "bleak", "miserable", "dismal", "grim"],
    "neu": ["table", "chair", "window", "paper", "street", "number", "minute", "corner", "button", "sheet"],
}
INIT = 0.02
FILLER = ["the", "a", "day", "was", "really", "quite", "today", "felt", "and", "very", "it", "so", "this", "is", "my"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_texts(label: str, n: int, rng: random.Random) -> list[str]:
    texts = []
    for _ in range(n):
        words = rng.sample(FILLER, 4) + rng.sample(WORDS[label], 2)
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts


def fixture_corpus() -> list[str]:
    return [" ".join(FILLER + sum(WORDS.values(), []))] * 4 + [w for ws in WORDS.values() for w in ws]


def wordpiece_tokenizer(corpus: list[str], vocab_size: int = 200, max_length: int = 128):
    """A BERT-style fast tokenizer (WordPiece, lower case, [CLS] text [SEP]) trained on `corpus`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return BertTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def build_tiny_model(
    folder: Path,
    model_type: str = "bert",
    corpus: list[str] | None = None,
    vocab_size: int = 200,
    max_length: int = 128,
    seed: int | None = 0,
    **config,
) -> Path:
    """A 2-layer, 32-wide BERT (or DistilBERT) classifier and its WordPiece tokenizer, saved in `folder`.
    `config` overrides the model's configuration (intermediate_size, initializer_range, id2label...)."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    if seed is not None:
        torch.manual_seed(seed)  # the same tiny model every time, so tests that train it are repeatable
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = wordpiece_tokenizer(corpus or fixture_corpus(), vocab_size, max_length)
    tokenizer.save_pretrained(folder)
    common = {"vocab_size": len(tokenizer), "pad_token_id": 0, "initializer_range": INIT}
    if model_type == "distilbert":
        settings = dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128)
        model = DistilBertForSequenceClassification(DistilBertConfig(**(common | settings | config)))
    else:
        settings = dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
        model = BertForSequenceClassification(BertConfig(**(common | settings | config)))
    model.eval().save_pretrained(folder)
    return folder


DECODERS = ("llama", "qwen2", "gpt2")
ARCHITECTURES = DECODERS + ("modernbert",)


def _decoder_tokenizer(model_type: str, corpus: list[str]):
    """Byte-level BPE as Llama/Qwen2/GPT-2 use; BOS/EOS but no pad token, as they all ship."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bos, eos = ("<|endoftext|>", "<|endoftext|>") if model_type == "gpt2" else ("<s>", "</s>")
    specials = sorted({bos, eos}, key=[bos, eos].index)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(
        corpus,
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


def build_tiny(folder: Path, model_type: str) -> Path:
    """Save a 2-layer, 32-wide language model of `model_type` and its tokenizer in `folder`: a decoder
    (llama, qwen2, gpt2) or ModernBERT, without a classification head, as their checkpoints ship."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = fixture_corpus()
    if model_type == "modernbert":
        tokenizer = wordpiece_tokenizer(corpus)
    else:
        tokenizer = _decoder_tokenizer(model_type, corpus)
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
