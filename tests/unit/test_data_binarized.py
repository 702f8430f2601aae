"""The tokenized-corpus cache (tformer.data.binarized, tformer.data.cache): built once, found again by fingerprint,
invalidated by any change of data or tokenizer, the same batches as the in-memory pairs, exact resume, and one
valid entry when two processes build at once."""

import dataclasses
import hashlib
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tformer import Transformer, TransformerConfig
from tformer.data import binarized, cache
from tformer.data.batching import TokenBatchSampler
from tformer.data.binarized import BinarizedPairs, write_pairs
from tformer.data.corpus import filter_pairs, read_parallel
from tformer.data.synthetic import make_number_task, write_parallel
from tformer.data.tokenizer import Tokenizer
from tformer.data.vocabularies import Vocabularies
from tformer.errors import TformerError
from tformer.tasks.translation import ParallelData, TranslationTask, prepare_data
from tformer.training import saving
from tformer.training.config import DataConfig, RunConfig, TrainConfig
from tformer.training.trainer import Trainer


@pytest.fixture
def corpus(tmp_path):
    task = make_number_task(300, 20, 0, max_number=999, seed=5)
    odd = [("", "leer"), ("one two three four five six seven eight nine ten eleven", "zehn"),
           ("a", "eins zwei drei vier")]  # dropped: empty, too long, over the length ratio
    train = task["train"] + odd
    write_parallel(train, tmp_path / "train.en", tmp_path / "train.de.gz")
    write_parallel(task["valid"], tmp_path / "valid.en", tmp_path / "valid.de")
    return tmp_path


def config(corpus, **data):
    d = {"data_dir": str(corpus), "train_src": "train.en", "train_tgt": "train.de.gz", "valid_src": "valid.en",
         "valid_tgt": "valid.de", "vocab_size": 90, "max_len": 10, "max_len_ratio": 2.5, **data}
    return RunConfig(run_dir=str(corpus / "run"), data=DataConfig(**d), model={"preset": "tiny"})


@pytest.fixture
def counted(monkeypatch):
    """Counts of tokenizer training and of texts encoded, through the real methods."""
    counts = {"train": 0, "encoded": 0}
    train, encode = Vocabularies.train.__func__, Tokenizer.encode_batch

    def counting_train(cls, *args, **kwargs):
        counts["train"] += 1
        return train(cls, *args, **kwargs)

    def counting_encode(self, texts):
        counts["encoded"] += len(texts)
        return encode(self, texts)

    monkeypatch.setattr(Vocabularies, "train", classmethod(counting_train))
    monkeypatch.setattr(Tokenizer, "encode_batch", counting_encode)
    monkeypatch.setattr(binarized, "CHUNK_PAIRS", 64)  # several chunks even here
    return counts


def entries(folder, kind):
    return sorted(p for p in Path(folder).glob(f"{kind}-*") if p.is_dir())


def test_second_load_reads_the_cache_without_tokenizing(corpus, counted):
    cfg = config(corpus)
    first = prepare_data(cfg)
    assert counted["train"] == 1 and counted["encoded"] == 2 * 303 + 2 * 20  # train pairs both sides, then valid
    [entry] = entries(corpus / "run" / "cache", "corpus")
    mtimes = {p.name: p.stat().st_mtime_ns for p in entry.iterdir()}
    again = prepare_data(cfg)  # a new run on the same data and settings: cached tokenizer and corpus
    resumed = prepare_data(cfg, Vocabularies.load(entries(corpus / "run" / "cache", "tokenizer")[0]))
    assert counted["train"] == 1 and counted["encoded"] == 2 * 303 + 3 * 2 * 20  # only the validation pairs again
    assert isinstance(again.train, BinarizedPairs) and again.train.folder == resumed.train.folder == entry
    assert {p.name: p.stat().st_mtime_ns for p in entry.iterdir()} == mtimes
    assert list(again.train) == list(first.train) and again.valid == first.valid
    assert not [p for p in (corpus / "run" / "cache").iterdir() if p.name.endswith(".lock") or p.name.startswith(".")]


def test_a_change_of_data_or_tokenizer_or_filter_makes_a_new_entry(corpus, counted):
    prepare_data(config(corpus))
    prepare_data(config(corpus, max_len=12))  # another filter: the same tokenizer, a new corpus entry
    assert counted["train"] == 1 and len(entries(corpus / "run" / "cache", "corpus")) == 2
    prepare_data(config(corpus, vocab_size=70))  # another tokenizer
    assert counted["train"] == 2 and len(entries(corpus / "run" / "cache", "corpus")) == 3
    changed = [*read_parallel(corpus / "train.en", corpus / "train.de.gz")[:-1], ("one", "eins")]
    write_parallel(changed, corpus / "train.en", corpus / "train.de.gz")  # the data changes
    data = prepare_data(config(corpus))
    assert counted["train"] == 3 and len(entries(corpus / "run" / "cache", "corpus")) == 4
    assert data.train[len(data.train) - 1] == (data.vocabs.src.encode("one"), data.vocabs.tgt.encode("eins"))


def test_a_touched_file_changes_the_fingerprint(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("x" * 200_000)
    before = cache.file_fingerprint(f)
    os.utime(f, ns=(before["mtime_ns"] + 10**9, before["mtime_ns"] + 10**9))
    assert cache.file_fingerprint(f) != before
    assert cache.file_fingerprint(f)["size"] == 200_000


def in_memory(data, cfg):
    """The pairs as prepare_data made them before the cache: all of them tokenized at once, then filtered."""
    text = read_parallel(cfg.data.path("train_src"), cfg.data.path("train_tgt"))
    src = data.vocabs.src.encode_batch([s for s, _ in text])
    tgt = data.vocabs.tgt.encode_batch([t for _, t in text])
    pairs, report = filter_pairs(list(zip(src, tgt, strict=True)), max_len=cfg.data.max_len,
                                 max_ratio=cfg.data.max_len_ratio)
    return pairs, report


def test_memory_mapped_pairs_give_the_batches_of_the_in_memory_pairs(corpus, counted):
    cfg = config(corpus)
    data = prepare_data(cfg)
    pairs, report = in_memory(data, cfg)
    assert data.train.report == report and report.too_long and report.ratio and report.empty  # each rule dropped some
    mapped, listed = TranslationTask(data), TranslationTask(ParallelData(data.vocabs, pairs))
    assert [x.tolist() for x in mapped.lengths("train")] == list(listed.lengths("train"))
    model = Transformer(TransformerConfig.tiny(vocab_size=data.vocabs.src.vocab_size))
    a = TokenBatchSampler(*mapped.lengths("train"), 60, seed=4, bucket_size=50)
    b = TokenBatchSampler(*listed.lengths("train"), 60, seed=4, bucket_size=50)
    for epoch in range(2):
        assert a.batches_for_epoch(epoch) == b.batches_for_epoch(epoch)
        for idx in a.batches_for_epoch(epoch):
            x, y = mapped.collate("train", idx, model), listed.collate("train", idx, model)
            assert all(torch.equal(getattr(x, k), getattr(y, k)) for k in ("src", "tgt_in", "tgt_out"))


def test_large_vocabularies_are_stored_as_int32(tmp_path):
    def encode(texts):
        return [[int(w) for w in t.split()] for t in texts]

    pairs = [("70000 5", "1 2 3"), ("65535", "65536 100000")]
    write_pairs(tmp_path, pairs, encode, encode, vocab_size=100_001, max_len=None, max_ratio=None)
    read = BinarizedPairs(tmp_path)
    assert list(read) == [([70000, 5], [1, 2, 3]), ([65535], [65536, 100000])]
    assert json.loads((tmp_path / "corpus.json").read_text())["dtype"] == np.dtype("<i4").str
    assert [list(x) for x in read.lengths()] == [[2, 1], [3, 2]] and read[-1] == read[1]


def test_resume_on_the_memory_mapped_corpus_is_bit_identical(corpus):
    data = prepare_data(config(corpus))

    def trainer(run_dir, max_steps):
        cfg = RunConfig(run_dir=str(run_dir), seed=3, model={"preset": "tiny"},
                        train=TrainConfig(max_steps=max_steps, warmup_steps=2, log_every=1, device="cpu",
                                          max_tokens=80, eval_every=3))
        torch.manual_seed(3)
        model = Transformer(TransformerConfig.tiny(vocab_size=data.vocabs.src.vocab_size, dropout=0.2,
                                                   num_encoder_layers=1, num_decoder_layers=1))
        task = TranslationTask(ParallelData(data.vocabs, data.train, data.valid))  # no text: no BLEU
        return Trainer(cfg, model, task, show_progress=False)

    straight = trainer(corpus / "straight", 6)
    straight.train()
    trainer(corpus / "resumed", 3).train()
    second = trainer(corpus / "resumed", 6)
    assert second.resume() and second.state.step == 3
    second.train()
    for (name, a), (_, b) in zip(second.model.state_dict().items(), straight.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def build_when_told(folder, go, out):
    """A builder process: waits for ``go``, then asks for the entry; writes what it did to ``out``."""
    while not go.exists():
        time.sleep(0.005)
    did = []

    def build(tmp):
        did.append("built")
        time.sleep(0.3)  # long enough for the other process to arrive and wait
        (tmp / "data").write_text("complete")

    entry, _ = cache.cached_entry(folder, "corpus", {"corpus": 1}, build)
    out.write_text(" ".join([*did, (entry / "data").read_text()]))


def test_two_processes_building_at_once_end_with_one_valid_entry(tmp_path):
    go, fork = tmp_path / "go", multiprocessing.get_context("fork")
    procs = [fork.Process(target=build_when_told, args=(tmp_path / "cache", go, tmp_path / f"out{i}")) for i in (0, 1)]
    for p in procs:
        p.start()
    time.sleep(0.1)
    go.touch()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    outs = sorted((tmp_path / f"out{i}").read_text() for i in (0, 1))
    assert outs == ["built complete", "complete"]  # one built it, the other waited and read it
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cache.entry_folder(tmp_path, "corpus",
                                                                                   {"corpus": 1}).name]


def test_without_locks_the_first_rename_wins(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "fcntl", None)
    key = {"corpus": 2}

    def build(tmp):  # another builder (no lock to stop it) finishes while this one is still building
        (tmp / "data").write_text("second")
        cache.cached_entry(tmp_path, "corpus", key, lambda t: (t / "data").write_text("first"))

    entry, built = cache.cached_entry(tmp_path, "corpus", key, build)
    assert built and (entry / "data").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == [entry.name]


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def build(tmp):
        (tmp / "half").write_text("x")
        raise ValueError("broken corpus")

    with pytest.raises(ValueError, match="broken corpus"):
        cache.cached_entry(tmp_path / "run" / "cache", "corpus", {"corpus": 3}, build)
    assert list(tmp_path.iterdir()) == []


def test_the_batches_fingerprint_is_fast_alike_for_lists_and_arrays_and_old_checkpoints_still_resume(corpus):
    lengths = ([3, 1, 4], [1, 5, 9])
    assert saving.data_fingerprint(lengths, 7, 100) == saving.data_fingerprint(tuple(map(np.array, lengths)), 7, 100)
    assert saving.data_fingerprint(lengths, 7, 100) != saving.data_fingerprint(([3, 1, 4], [1, 5, 8]), 7, 100)
    old = hashlib.sha256(f"7|100|3{[(3, 1), (1, 5), (4, 9)]!r}".encode()).hexdigest()[:16]  # before "v2:"
    assert saving.legacy_data_fingerprint(tuple(map(np.array, lengths)), 7, 100) == old

    data = prepare_data(config(corpus))
    cfg = RunConfig(run_dir=str(corpus / "old"), seed=3, model={"preset": "tiny"},
                    train=TrainConfig(max_steps=2, warmup_steps=2, device="cpu", max_tokens=80))
    model = Transformer(TransformerConfig.tiny(vocab_size=data.vocabs.src.vocab_size))
    Trainer(cfg, model, TranslationTask(ParallelData(data.vocabs, data.train)), show_progress=False).train()
    files = sorted((corpus / "old" / "checkpoints").glob("*.pt"))
    ckpt = torch.load(files[0], weights_only=False)
    for fingerprint, resumes in ((saving.legacy_data_fingerprint(data.train.lengths(), 3, 80), True), (old, False)):
        for f in files:  # as checkpoints written before "v2:"
            torch.save({**ckpt, "data_fingerprint": fingerprint}, f)
        again = Trainer(dataclasses.replace(cfg, train=TrainConfig(max_steps=3, device="cpu", max_tokens=80)), model,
                        TranslationTask(ParallelData(data.vocabs, data.train)), show_progress=False)
        if resumes:
            assert again.resume() and again.state.step == 2
        else:
            with pytest.raises(TformerError, match="other batches"):
                again.resume()
