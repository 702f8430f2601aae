"""Hugging Face folders the tests build themselves: real ``transformers`` models with random weights, saved with
real tokenizers trained here on a few hundred generated sentences (no download)."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import torch

WORDS_EN = ("the a dog cat man woman child runs walks sees eats big small red green house street park ball "
            "water tree old young plays sits near with under over blue").split()
WORDS_DE = ("der ein hund katze mann frau kind läuft geht sieht isst groß klein rot grün haus "
            "straße park ball wasser baum alt jung spielt sitzt neben mit unter über blau").split()


def sentences(words: tuple[str, ...] | list[str], n: int, seed: int) -> list[str]:
    """``n`` sentences of 3-12 words from ``words`` (capitalised, ending in a full stop), seeded."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        out.append(text[0].upper() + text[1:] + rng.choice([".", ".", "!", "?"]))
    return out


def train_spm(texts: list[str], vocab_size: int) -> bytes:
    """A SentencePiece unigram model trained on ``texts`` (serialized)."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size,
                                             model_type="unigram", character_coverage=1.0, minloglevel=2)
    return model.getvalue()


def marian_folder(path: Path, *, seed: int = 0, d_model: int = 32, steps: int = 150) -> Path:
    """A random ``MarianMTModel`` saved with ``MarianTokenizer`` files (source.spm, target.spm, a shared vocab.json
    numbered as OPUS-MT does: ``</s>`` 0, ``<unk>`` 1, pieces, ``<pad>`` last), trained for ``steps`` updates on a
    word-by-word task so that its translations are varied and end (:func:`train_briefly`)."""
    import sentencepiece
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    path.mkdir(parents=True, exist_ok=True)
    src_spm = train_spm(sentences(WORDS_EN, 300, seed), 60)
    tgt_spm = train_spm(sentences(WORDS_DE, 300, seed + 1), 60)
    pieces: list[str] = []
    for model in (src_spm, tgt_spm):
        sp = sentencepiece.SentencePieceProcessor()
        sp.LoadFromSerializedProto(model)
        pieces += [sp.id_to_piece(i) for i in range(sp.get_piece_size())
                   if not sp.is_control(i) and not sp.is_unknown(i)]
    vocab = {"</s>": 0, "<unk>": 1}
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    vocab["<pad>"] = len(vocab)
    (path / "source.spm").write_bytes(src_spm)
    (path / "target.spm").write_bytes(tgt_spm)
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    tok = MarianTokenizer(str(path / "source.spm"), str(path / "target.spm"), str(path / "vocab.json"))
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    v, pad = len(vocab), vocab["<pad>"]
    cfg = MarianConfig(vocab_size=v, decoder_vocab_size=v, d_model=d_model, encoder_layers=2, decoder_layers=2,
                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * d_model,
                       decoder_ffn_dim=2 * d_model, max_position_embeddings=128, pad_token_id=pad, eos_token_id=0,
                       decoder_start_token_id=pad, forced_eos_token_id=None, scale_embedding=True, dropout=0.0)
    model = MarianMTModel(cfg)
    train_briefly(model, tok, seed, steps)
    model.generation_config.bad_words_ids = [[pad]]
    model.save_pretrained(path)
    return path


def word_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """English sentences and their word-by-word "German" (each word of WORDS_EN mapped to WORDS_DE's)."""
    table = dict(zip(WORDS_EN, WORDS_DE, strict=True))
    out = []
    for text in sentences(WORDS_EN, n, seed):
        words = text[:-1].lower().split()
        de = " ".join(table[w] for w in words)
        out.append((text, de[0].upper() + de[1:] + text[-1]))
    return out


def adam_steps(model, batches, lr: float) -> None:
    """One Adam step per batch of model inputs (each a dict with ``labels``); the model is left in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for batch in batches:
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def train_briefly(model, tok, seed: int, steps: int) -> None:
    """``steps`` Adam steps on :func:`word_pairs`: enough that outputs vary with the input and end with EOS, as a
    real model's do (a random Marian repeats one token forever)."""
    pairs = word_pairs(256, seed + 2)

    def batch(step: int):
        chunk = pairs[(step * 32) % len(pairs):][:32]
        b = tok([s for s, _ in chunk], text_target=[t for _, t in chunk], return_tensors="pt", padding=True)
        b["labels"][b["labels"] == model.config.pad_token_id] = -100
        return b

    adam_steps(model, (batch(step) for step in range(steps)), lr=3e-3)


def cli_translate(run, texts: list[str], beam: int) -> list[str]:
    """``tformer translate RUN --beam B`` of ``texts`` (length penalty 0 for beam search, at most 40 tokens)."""
    from cli_helpers import tformer_cli

    alpha = ["--alpha", 0] if beam > 1 else []
    r = tformer_cli("translate", run, "--beam", beam, *alpha, "--max-len", 40, input="\n".join(texts) + "\n")
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()
