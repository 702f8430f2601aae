"""``tformer plot PICTURE ... -o FILE``: the pictures of :mod:`tformer.viz` from a run directory.

    tformer plot attention RUN_DIR --text "three hundred twenty-one" [--target ...] [--kind cross]
                           [--layer N] [--head N|grid|mean] -o cross.png
    tformer plot patches RUN_DIR [--image N] -o patches.png        (a run of task vision)
    tformer plot windows [RUN_DIR] [--image-size 224 --patch-size 4 --window 7] [--stage N] [--block N]
                         [--image N] -o windows.png                (a Swin run of task vision, or sizes)
    tformer plot positional [RUN_DIR] [--d-model 512] [--max-len 100] -o positional.png
    tformer plot masks RUN_DIR --text "one" --text "two hundred" [--target ...] -o masks.png
    tformer plot schedule CONFIG.yaml|RUN_DIR [--steps N] -o schedule.png
    tformer plot curves RUN_DIR -o curves.png
    tformer plot beam RUN_DIR --text "three hundred twenty-one" [--beam 4] [--alpha 0.6] -o beam.svg
    tformer plot filterbank [RUN_DIR] FILE.wav [--n-mels 80] -o filterbank.png
    tformer plot alignment RUN_DIR FILE.wav [--layer N] [--head N|mean] [--beam N] -o alignment.png
                                                                   (a run of task asr)

The suffix of ``-o`` picks the format (.png, .svg, .pdf). Layers and heads are numbered from 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tformer.cli.transcribe import add_window_arguments, window_of
from tformer.errors import TformerError

RUN_DIR_HELP = "a run made by tformer train or tformer demo"


def _head(value: str) -> int | str:
    if value in ("grid", "mean"):
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a head number, 'grid' or 'mean', got {value!r}") from None


def _head_or_mean(value: str) -> int | str:
    return "mean" if value == "mean" else _head(value)


def _guided_band_option(q: argparse.ArgumentParser) -> None:
    q.add_argument("--guided-band", type=float, nargs="?", const=0.2, default=None, metavar="G",
                   help="overlay the guided attention loss's band on the cross-attention: the diagonal and where "
                        "W = 1/2, for g = G (default 0.2, Tachibana et al.'s)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="picture", metavar="PICTURE", required=True)

    def picture(name: str, help_text: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("-o", "--output", required=True, help="the picture to write: .png, .svg or .pdf")
        q.add_argument("--dpi", type=int, default=150, help="PNG resolution, dots per inch (default 150)")
        return q

    _translation_pictures(picture)
    _vision_pictures(picture)
    _training_pictures(picture)
    _speech_pictures(picture)


def _translation_pictures(picture) -> None:
    """A translation run's pictures: attention, positional encodings, masks and the beam tree."""
    q = picture("attention", "attention weights of one sentence, tokens on the axes (§3.2.3)")
    q.add_argument("run_dir", metavar="RUN_DIR", help=RUN_DIR_HELP)
    q.add_argument("--text", required=True, help="the source sentence")
    q.add_argument("--target", default=None, help="teacher-force this translation (default: the model's own)")
    q.add_argument("--kind", choices=("encoder", "decoder_self", "cross"), default="cross",
                   help="encoder self-attention, decoder masked self-attention or cross-attention (default)")
    q.add_argument("--layer", type=int, default=None, help="layer number, from 1 (default: the last)")
    q.add_argument("--head", type=_head, default="grid", help="head number from 1, 'grid' (default: all heads) "
                                                              "or 'mean' (their average)")
    q.add_argument("--beam", type=int, default=4, help="beam size of the translation (without --target)")
    _guided_band_option(q)
    q.set_defaults(draw=_attention)

    q = picture("positional", "the positional-encoding matrix and the similarity of positions (§3.5)")
    q.add_argument("run_dir", metavar="RUN_DIR", nargs="?", default=None,
                   help="draw this run's encodings (default: the sinusoids of --d-model)")
    q.add_argument("--d-model", type=int, default=512, help="d_model without RUN_DIR (default 512)")
    q.add_argument("--max-len", type=int, default=100, help="positions to draw (default 100)")
    q.set_defaults(draw=_positional)

    q = picture("masks", "the padding and causal masks of a batch, as the model sees them (§3.2.3)")
    q.add_argument("run_dir", metavar="RUN_DIR", help=RUN_DIR_HELP)
    q.add_argument("--text", action="append", required=True, help="a source sentence of the batch (repeat)")
    q.add_argument("--target", action="append", default=None,
                   help="its target, once per --text (default: the model's translations)")
    q.set_defaults(draw=_masks)

    q = picture("beam", "the beam-search tree of one sentence: hypotheses kept, finished, pruned (§6.1)")
    q.add_argument("run_dir", metavar="RUN_DIR", help=RUN_DIR_HELP)
    q.add_argument("--text", required=True, help="the source sentence")
    q.add_argument("--beam", type=int, default=4, help="beam size K (default 4)")
    q.add_argument("--alpha", type=float, default=0.6, help="length penalty alpha (default 0.6)")
    q.add_argument("--max-len", type=int, default=None, help="most output tokens (default: source length + 50)")
    q.set_defaults(draw=_beam)


def _vision_pictures(picture) -> None:
    """A vision run's pictures: ViT patch attention and Swin windows."""
    q = picture("patches", "a Vision Transformer run: the [class] token's attention over an image's patches")
    q.add_argument("run_dir", metavar="RUN_DIR", help="a run of task vision")
    q.add_argument("--image", type=int, default=0, help="which test image, from 0 (default 0)")
    q.set_defaults(draw=_patches)

    q = picture("windows", "Swin windows: the partition, the shifted partition, the shift mask and, for a run, the "
                           "attention inside the windows of a block over a test image (§3.2)")
    q.add_argument("run_dir", metavar="RUN_DIR", nargs="?", default=None,
                   help="a Swin run of task vision (default: draw the windows of --image-size, --patch-size, --window)")
    q.add_argument("--image-size", type=int, default=224, help="image side in pixels without RUN_DIR (default 224)")
    q.add_argument("--patch-size", type=int, default=4, help="patch side in pixels without RUN_DIR (default 4)")
    q.add_argument("--window", type=int, default=7, help="window side M in patches without RUN_DIR (default 7)")
    q.add_argument("--stage", type=int, default=1, help="stage number, from 1 (default 1)")
    q.add_argument("--block", type=int, default=2, help="block of the stage, from 1 (default 2: a shifted one)")
    q.add_argument("--image", type=int, default=0, help="which test image of a run, from 0 (default 0)")
    q.set_defaults(draw=_windows)


def _training_pictures(picture) -> None:
    """A recipe's or run's training: the learning-rate schedule and the curves."""
    q = picture("schedule", "the learning-rate schedule of a recipe or run (Eq. 3, §5.3)")
    q.add_argument("source", metavar="CONFIG.yaml|RUN_DIR",
                   help="a recipe, or a run (its config.yaml, with the rates it logged)")
    q.add_argument("--steps", type=int, default=None,
                   help="last step drawn (default: train.max_steps, else 5 x warmup_steps)")
    q.set_defaults(draw=_schedule)

    q = picture("curves", "train/validation loss, validation BLEU, tokens/s and lr of a run (metrics.jsonl)")
    q.add_argument("run_dir", metavar="RUN_DIR", help=RUN_DIR_HELP)
    q.set_defaults(draw=_curves)


def _speech_pictures(picture) -> None:
    """A speech run's pictures: the filterbank and the alignment over the frames."""
    q = picture("filterbank", "the log-mel filterbank of an audio file, time in seconds (what a speech model reads)")
    q.add_argument("paths", metavar="[RUN_DIR] FILE", nargs="+",
                   help="an audio file; after a run of task asr, its normalised features as the model reads them")
    q.add_argument("--n-mels", type=int, default=80, help="mel channels without RUN_DIR (default 80)")
    q.set_defaults(draw=_filterbank)

    q = picture("alignment", "a speech run: the filterbank of an audio file and, on the same time axis, the "
                             "decoder's attention over the encoder frames (or CTC's frame posteriors)")
    q.add_argument("run_dir", metavar="RUN_DIR", help="a run of task asr")
    q.add_argument("file", metavar="FILE", help="the audio file (WAV, FLAC, ...)")
    q.add_argument("--layer", type=int, default=None, help="decoder layer, from 1 (default: the last)")
    q.add_argument("--head", type=_head_or_mean, default="mean", help="head number from 1, or 'mean' (default)")
    q.add_argument("--beam", type=int, default=None, help="beam size of the transcript (default: the run's)")
    add_window_arguments(q)
    _guided_band_option(q)
    q.set_defaults(draw=_alignment)


def run(args: argparse.Namespace) -> int:
    try:
        from tformer.viz.figure import picture_format, save_figure
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "matplotlib":
            raise TformerError("tformer plot needs matplotlib: pip install 'tformer[viz]'") from None
        raise
    picture_format(args.output)  # a bad name fails before any work
    if not 20 <= args.dpi <= 1000:
        raise TformerError(f"--dpi must be between 20 and 1000, got {args.dpi}")
    path = save_figure(args.draw(args), args.output, dpi=args.dpi)
    print(f"wrote {path}")
    return 0


def _translator(run_dir: str, *features, what: str = "tformer plot"):
    """The run's Translator; a model without ``features`` (:class:`tformer.generation.Feature`) is refused."""
    from tformer.translator import Translator

    translator = Translator.from_pretrained(run_dir)
    translator.capabilities.require(*features, what=what)
    return translator


def _attention(args: argparse.Namespace):
    from tformer.generation import Feature
    from tformer.viz.attention import plot_attention

    translator = _translator(args.run_dir, Feature.ATTENTION_MAPS, what="tformer plot attention")
    att = translator.attention(args.text, target=args.target, beam_size=args.beam)
    return plot_attention(att, args.kind, args.layer, args.head, args.guided_band)


def _patches(args: argparse.Namespace):
    import torch

    from tformer.data.images import load_digits_splits
    from tformer.models.vit.model import VisionClassifier, attention_rollout, cls_attention_maps
    from tformer.viz.patches import plot_patch_attention

    model = VisionClassifier.from_pretrained(Path(args.run_dir) / "model").eval()
    test = load_digits_splits(seed=0).test  # the split task vision holds out
    if not 0 <= args.image < len(test):
        raise TformerError(f"--image must be in [0, {len(test) - 1}], got {args.image}")
    image = test.images[args.image : args.image + 1]  # (1, C, H, W)
    with torch.no_grad():
        logits, weights = model(image, need_weights=True)
    g = model.cfg.grid_size
    maps = cls_attention_maps(weights, g)[:, 0].mean(dim=1)  # (L, 1, H, G, G) -> (L, G, G)
    rollout = attention_rollout(weights)[0, 0, 1:].unflatten(0, (g, g))  # (G, G)
    guess, label = int(logits.argmax()), int(test.labels[args.image])
    return plot_patch_attention(image[0], maps, rollout, f"Test image {args.image}: label {label}, predicted "
                                f"{guess}. [class] attention over {g}x{g} patches (mean of heads), by layer")


def _windows(args: argparse.Namespace):
    from tformer.models.swin.windows import window_and_shift
    from tformer.viz.windows import plot_windows

    if args.run_dir is None:
        for name in ("image_size", "patch_size", "window"):
            if getattr(args, name) < 1:
                raise TformerError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        resolution = -(-args.image_size // args.patch_size)  # R_0 = ceil(S / P)
        for _ in range(args.stage - 1):
            resolution = -(-resolution // 2)  # patch merging halves the map (an odd side padded first)
        if args.stage < 1 or resolution < 1:
            raise TformerError(f"--stage must be >= 1, got {args.stage}")
        m, shift = window_and_shift(resolution, args.window)
        return plot_windows(resolution, m, shift, title=f"Swin windows, stage {args.stage}: {args.image_size} px "
                            f"images in {args.patch_size} px patches, a {resolution}x{resolution} map (§3.2)")
    return _run_windows(args)


def _run_windows(args: argparse.Namespace):
    import torch

    from tformer.data.images import load_digits_splits
    from tformer.models.registry import load_pretrained
    from tformer.models.swin.model import SwinClassifier
    from tformer.viz.windows import plot_windows

    model = load_pretrained(Path(args.run_dir) / "model")
    if not isinstance(model, SwinClassifier):
        raise TformerError(f"{args.run_dir} holds a {type(model).__name__}: tformer plot windows needs a Swin run "
                           f"(task vision, model.preset: digits_swin)")
    cfg, stages = model.cfg, model.swin.stages
    if not 1 <= args.stage <= len(stages):
        raise TformerError(f"--stage must be in [1, {len(stages)}], got {args.stage}")
    blocks = stages[args.stage - 1].layers
    if not 1 <= args.block <= len(blocks):
        raise TformerError(f"--block must be in [1, {len(blocks)}] for stage {args.stage}, got {args.block}")
    test = load_digits_splits(seed=0).test  # the split task vision holds out
    if not 0 <= args.image < len(test):
        raise TformerError(f"--image must be in [0, {len(test) - 1}], got {args.image}")
    scale = cfg.image_size // test.images.shape[-1]  # as task vision scales the digits up
    image = test.images[args.image : args.image + 1].repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    with torch.no_grad():
        logits, weights = model.eval()(image, need_weights=True)
    block = blocks[args.block - 1]
    index = sum(len(s.layers) for s in stages[: args.stage - 1]) + args.block - 1  # weights are per block, in order
    shifted = next((b.shift for b in blocks if b.shift), 0)  # the stage's SW-MSA shift
    guess, label = int(logits.argmax()), int(test.labels[args.image])
    return plot_windows(block.resolution, block.window, shifted, image=image[0], weights=weights[index],
                        block_shift=block.shift, title=f"{args.run_dir}, stage {args.stage}, block {args.block} "
                        f"({'SW-MSA' if block.shift else 'W-MSA'}): test image {args.image}, label {label}, "
                        f"predicted {guess}")


def _positional(args: argparse.Namespace):
    from tformer.nn.positional import sinusoidal_table
    from tformer.viz.positional import plot_positional

    if args.max_len < 1:
        raise TformerError(f"--max-len must be >= 1, got {args.max_len}")
    if args.run_dir is None:
        if args.d_model < 2 or args.d_model % 2:
            raise TformerError(f"--d-model must be even and >= 2, got {args.d_model}")
        return plot_positional(sinusoidal_table(args.max_len, args.d_model),
                               f"Sinusoidal positional encoding (§3.5), d_model = {args.d_model}")
    model = _translator(args.run_dir).model
    cfg, n = model.cfg, min(args.max_len, model.cfg.max_len)
    if cfg.positional == "relative":
        raise TformerError(f"{args.run_dir} uses relative positions (a bias per head and distance): "
                           f"there is no positional table to draw")
    if cfg.positional == "learned":
        return plot_positional(model.encoder.embed.positions.weight[:n],
                               f"Learned positional embeddings of the encoder, {args.run_dir}")
    return plot_positional(model.encoder.embed.positions.table[:n],
                           f"Sinusoidal positional encoding (§3.5) of {args.run_dir}, d_model = {cfg.d_model}")


def _masks(args: argparse.Namespace):
    from tformer.generation import Feature
    from tformer.viz.masks import batch_masks, plot_masks, sentence_batch

    translator = _translator(args.run_dir, Feature.GREEDY, what="tformer plot masks")  # the causal decoder's masks
    src, tgt_in, src_tokens, tgt_tokens = sentence_batch(translator, args.text, args.target)
    return plot_masks(batch_masks(src, tgt_in, translator.model.cfg.pad_id), src_tokens, tgt_tokens)


def _schedule(args: argparse.Namespace):
    from tformer.tasks import get_task, load_run_config
    from tformer.viz.curves import logged_learning_rates, read_metrics
    from tformer.viz.schedule import plot_schedule

    source = Path(args.source)
    logged: list[tuple[int, float]] = []
    if source.is_dir():
        if not (source / "config.yaml").is_file():
            raise TformerError(f"{source} is not a run directory (no config.yaml)")
        if (source / "metrics.jsonl").is_file():
            logged = logged_learning_rates(read_metrics(source / "metrics.jsonl"))
        source = source / "config.yaml"
    cfg = load_run_config(source)
    tc, d_model = cfg.train, get_task(cfg.task).model_width(cfg)
    steps = args.steps or max(tc.max_steps, max((s for s, _ in logged), default=0)) or 5 * tc.warmup_steps
    return plot_schedule(d_model, tc.warmup_steps, tc.lr_scale, steps, logged)


def _curves(args: argparse.Namespace):
    from tformer.viz.curves import plot_curves, read_metrics

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise TformerError(f"run directory not found: {run_dir}")
    return plot_curves(read_metrics(run_dir / "metrics.jsonl"), f"Training curves of {run_dir}")


def _beam(args: argparse.Namespace):
    from tformer.generation import Feature
    from tformer.viz.beam_tree import beam_tree, plot_beam_tree

    translator = _translator(args.run_dir, Feature.BEAM, what="tformer plot beam")
    tree = beam_tree(translator, args.text, args.beam, args.alpha, args.max_len)
    return plot_beam_tree(tree)


def _filterbank(args: argparse.Namespace):
    from tformer.data.audio import log_mel, read_wav
    from tformer.tasks.asr_features import SpeechFeatures
    from tformer.tasks.transcriber import Transcriber
    from tformer.viz.audio import plot_filterbank

    if len(args.paths) > 2:
        raise TformerError(f"expected [RUN_DIR] FILE, got {len(args.paths)} paths")
    path = args.paths[-1]
    if len(args.paths) == 2:  # the run's features, as its model reads them
        features, hop = Transcriber.from_run(args.paths[0]).features.of_file(path)
        return plot_filterbank(features, hop, f"{Path(path).name}, as {args.paths[0]} reads it", normalised=True)
    if args.n_mels < 1:
        raise TformerError(f"--n-mels must be >= 1, got {args.n_mels}")
    waveform, rate = read_wav(path)
    cfg = SpeechFeatures(n_mels=args.n_mels).log_mel_config(rate)
    if waveform.numel() == 0:
        raise TformerError(f"{path} holds no samples")
    return plot_filterbank(log_mel(waveform, cfg), cfg.hop_length / rate, f"Log-mel filterbank of {Path(path).name} "
                           f"({rate} Hz)")


def _alignment(args: argparse.Namespace):
    from tformer.tasks.transcriber import Transcriber
    from tformer.viz.audio import plot_alignment, select_heads

    if args.beam is not None and args.beam < 1:
        raise TformerError(f"--beam must be >= 1, got {args.beam}")
    window = window_of(args)
    a = Transcriber.from_run(args.run_dir).alignment(args.file, args.beam, window)
    weights, where = select_heads(a.layers, args.layer, args.head)
    what = f"decoder's encoder-decoder attention, {where}" if a.kind == "cross-attention" else "CTC's posteriors"
    if window is not None:
        what += f", under a monotonic window ({window.ahead} ahead, {window.back} back)"
    return plot_alignment(a.features, a.hop_seconds, weights, a.frame_seconds, a.rows,
                          f"{Path(args.file).name} through {args.run_dir}: {what}", what=a.kind,
                          details=f"transcript: {a.transcript!r}", guided_band=args.guided_band)
