"""Hugging Face folders of the families ``tformer import`` takes besides Marian (:mod:`hf_helpers`), built here: real
``transformers`` models with random weights trained for a few dozen steps (so that outputs vary with the input and
end, as a real model's do), saved with real fast tokenizers trained here on the sentences of :mod:`hf_helpers`
(no download)."""

from __future__ import annotations

import io
import random
from pathlib import Path

import torch
from hf_helpers import WORDS_DE, WORDS_EN, adam_steps, sentences


def short_pairs(n: int, seed: int, max_words: int = 5) -> list[tuple[str, str]]:
    """``n`` lower-case English phrases of 1..``max_words`` words and their word-by-word "German"."""
    table = dict(zip(WORDS_EN, WORDS_DE, strict=True))
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS_EN) for _ in range(rng.randint(1, max_words))]
        out.append((" ".join(words), " ".join(table[w] for w in words)))
    return out


def t5_folder(path: Path, *, seed: int = 0, steps: int = 60) -> Path:
    """A ``T5ForConditionalGeneration`` (v1.0: ReLU FFN, tied embeddings) saved with its ``T5Tokenizer``'s
    ``tokenizer.json``: a SentencePiece unigram model trained here (T5's ids: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2;
    10 sentinels) converted by ``transformers`` as it converts a real ``spiece.model``. The model's vocabulary is 6
    ids larger than the tokenizer's, as t5-small's 32128 rows hold 32100 tokens. Trained ``steps`` steps on
    :func:`short_pairs`."""
    import sentencepiece
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    path.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    texts = sentences(WORDS_EN, 300, seed) + sentences(WORDS_DE, 300, seed + 1)
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=model, vocab_size=90,
                                             model_type="unigram", character_coverage=1.0, minloglevel=2,
                                             pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    (path / "spiece.model").write_bytes(model.getvalue())
    tok = T5Tokenizer.from_pretrained(path, extra_ids=10)
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=len(tok) + 6, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                   feed_forward_proj="relu", dropout_rate=0.0, relative_attention_num_buckets=8,
                   relative_attention_max_distance=20, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    t5 = T5ForConditionalGeneration(cfg)
    pairs = short_pairs(32 * steps, seed + 2)

    def batch(chunk):
        b = tok([s for s, _ in chunk], text_target=[t for _, t in chunk], return_tensors="pt", padding=True)
        b["labels"][b["labels"] == tok.pad_token_id] = -100
        return b

    adam_steps(t5, (batch(pairs[i:i + 32]) for i in range(0, len(pairs), 32)), lr=1e-2)
    t5.generation_config.bad_words_ids = [[tok.pad_token_id]]  # tformer never emits the decoder start either
    t5.save_pretrained(path)
    return path


def hf_generate(folder: Path, texts: list[str], beam: int, max_new: int = 40) -> list[str]:
    """What ``transformers`` translates: the folder's tokenizer on a padded batch, ``generate`` (greedy, or beam
    search with length_penalty 0: a hypothesis' score is its log-probability, as tformer's with ``--alpha 0``),
    ``batch_decode(skip_special_tokens=True)``."""
    import transformers

    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    enc = tok(texts, return_tensors="pt", padding=True)
    assert (enc["attention_mask"] == 0).any()  # the batch is padded
    with torch.no_grad():
        lp = {"length_penalty": 0.0} if beam > 1 else {}
        out = model.generate(**enc, num_beams=beam, do_sample=False, max_new_tokens=max_new, **lp)
    return tok.batch_decode(out, skip_special_tokens=True)


def edited_copy(folder: Path, dest: Path, *, drop: tuple[str, ...] = (), **config) -> Path:
    """A copy of ``folder`` without the files ``drop`` and with ``config.json``'s keys ``config`` changed."""
    import json
    import shutil

    shutil.copytree(folder, dest)
    for name in drop:
        (dest / name).unlink()
    doc = json.loads((dest / "config.json").read_text())
    (dest / "config.json").write_text(json.dumps({**doc, **config}))
    return dest


def chains(n: int, seed: int) -> list[str]:
    """``n`` texts of 2..8 words of WORDS_EN, each word followed by its successor in one fixed shuffled cycle, and a
    full stop: a language a tiny model learns in a few dozen steps, whose continuations depend on the prompt."""
    rng = random.Random(seed)
    order = list(WORDS_EN)
    random.Random(0).shuffle(order)
    successor = dict(zip(order, order[1:] + order[:1], strict=True))
    out = []
    for _ in range(n):
        words = [rng.choice(order)]
        for _ in range(rng.randint(1, 7)):
            words.append(successor[words[-1]])
        out.append(" ".join(words) + ".")
    return out


def gpt2_folder(path: Path, *, seed: int = 0, steps: int = 60) -> Path:
    """A ``GPT2LMHeadModel`` saved with a ``GPT2Tokenizer``: byte-level BPE trained here with ``tokenizers``, its one
    ``<|endoftext|>`` numbered last (as GPT-2's 50256 is). Trained ``steps`` steps on ``<|endoftext|>`` + a text of
    :func:`chains` + ``<|endoftext|>``, so that a prompt's continuation is its own, and ends."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    path.mkdir(parents=True, exist_ok=True)
    eot = "<|endoftext|>"
    texts = chains(32 * steps, seed)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts[:600], trainers.BpeTrainer(
        vocab_size=400, special_tokens=[eot], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    vocab = {t: i for t, i in sorted(bpe.get_vocab().items(), key=lambda kv: kv[1]) if t != eot}
    vocab = {t: n for n, t in enumerate(vocab)} | {eot: len(vocab)}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in __import__("json").loads(bpe.to_str())["model"]["merges"]]
    tok = GPT2Tokenizer(vocab=vocab, merges=merges)
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    end = vocab[eot]
    cfg = GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=end, eos_token_id=end)
    gpt2 = GPT2LMHeadModel(cfg)

    def batch(chunk):
        ids = [[end, *tok(t)["input_ids"], end] for t in chunk]
        width = max(map(len, ids))
        input_ids = torch.tensor([x + [end] * (width - len(x)) for x in ids])
        labels = torch.tensor([x + [-100] * (width - len(x)) for x in ids])
        return {"input_ids": input_ids, "labels": labels}

    adam_steps(gpt2, (batch(texts[i:i + 32]) for i in range(0, len(texts), 32)), lr=1e-2)
    gpt2.save_pretrained(path)
    return path


def hf_continue(folder: Path, prompts: list[str], beam: int, max_new: int = 24) -> list[str]:
    """What ``transformers`` continues, prompt by prompt (no padding): ``generate`` on ``<|endoftext|>`` + the
    prompt's ids (greedy, or beam search with length_penalty 0), the new tokens decoded with
    ``skip_special_tokens=True``."""
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    out = []
    for prompt in prompts:
        ids = torch.tensor([[tok.bos_token_id, *tok(prompt)["input_ids"]]])
        lp = {"length_penalty": 0.0} if beam > 1 else {}
        with torch.no_grad():
            new = model.generate(ids, attention_mask=torch.ones_like(ids), num_beams=beam, do_sample=False,
                                 max_new_tokens=max_new, pad_token_id=tok.eos_token_id, **lp)[0, ids.shape[1]:]
        out.append(tok.decode(new, skip_special_tokens=True))
    return out


LANGUAGES = ("en", "de")


def bert_folder(path: Path, *, seed: int = 0, steps: int = 40) -> Path:
    """A ``BertForSequenceClassification`` (labels ``en`` and ``de``, in ``id2label``) saved with a ``BertTokenizer``:
    lower-casing WordPiece trained here with ``tokenizers`` (``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3,
    ``[MASK]`` 4). Trained ``steps`` steps to tell the sentences of :mod:`hf_helpers`' two word lists apart."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    en, de = sentences(WORDS_EN, 16 * steps, seed), sentences(WORDS_DE, 16 * steps, seed + 1)
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(en[:300] + de[:300], trainers.WordPieceTrainer(
        vocab_size=120, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False))
    tok = BertTokenizer(vocab=wordpiece.get_vocab())
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, id2label=dict(enumerate(LANGUAGES)),
                     label2id={y: i for i, y in enumerate(LANGUAGES)})
    bert = BertForSequenceClassification(cfg)
    examples = [(text, 0) for text in en] + [(text, 1) for text in de]
    random.Random(seed).shuffle(examples)

    def batch(chunk):
        b = tok([t for t, _ in chunk], return_tensors="pt", padding=True)
        return {**b, "labels": torch.tensor([y for _, y in chunk])}

    adam_steps(bert, (batch(examples[i:i + 32]) for i in range(0, len(examples), 32)), lr=3e-3)
    bert.save_pretrained(path)
    return path
