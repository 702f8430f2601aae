"""`tformer plot ...` on a run made by `tformer train`, and the picture `tformer demo` leaves in its run."""

import html
import json
import sys

import pytest
from cli_helpers import tformer_subprocess

pytest.importorskip("matplotlib")

from tformer.cli.main import main  # noqa: E402
from tformer.translator import Translator  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT = "three hundred twenty-one"


def _plot(capsys, *args):
    """Run `tformer plot ...` in this process (fast); returns (exit status, stdout, stderr)."""
    code = main(["plot", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # width, height


def test_attention_svg_has_the_tokens_of_the_sentence(trained_run, tmp_path, capsys):
    out = tmp_path / "cross.svg"
    code, stdout, _ = _plot(capsys, "attention", trained_run, "--text", TEXT, "--head", "1", "-o", out)
    assert code == 0 and stdout.strip() == f"wrote {out}"
    att = Translator.from_pretrained(trained_run).attention(TEXT)
    svg = out.read_text(encoding="utf-8")
    for token in {*att.source_tokens, *att.target_output_tokens}:
        assert html.escape(token, quote=False) in svg, token
    assert "Encoder-decoder (cross-) attention, layer 2 of 2: head 1 of 4" in svg
    assert "guided band" not in svg


def test_the_guided_band_is_drawn_over_the_cross_attention(trained_run, tmp_path, capsys):
    out = tmp_path / "band.svg"
    code, _, stderr = _plot(capsys, "attention", trained_run, "--text", TEXT, "--head", "mean", "--guided-band",
                            "-o", out)
    assert code == 0, stderr
    assert "guided band, g = 0.2 (W = 1/2)" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("args", [
    ["attention", "RUN", "--text", TEXT, "--kind", "encoder", "--layer", "1"],  # grid of all heads
    ["attention", "RUN", "--text", TEXT, "--target", "dreihunderteinundzwanzig", "--kind", "decoder_self",
     "--head", "mean"],
    ["positional", "RUN", "--max-len", "40"],
    ["positional", "--d-model", "128", "--max-len", "60"],
    ["masks", "RUN", "--text", TEXT, "--text", "five"],
    ["schedule", "RUN"],
    ["schedule", "RUN/config.yaml", "--steps", "200"],
    ["curves", "RUN"],
    ["beam", "RUN", "--text", "twelve", "--beam", "3"],
])
def test_every_picture_is_made_from_a_trained_run(trained_run, tmp_path, capsys, args):
    out = tmp_path / "picture.png"
    args = [a.replace("RUN", str(trained_run)) for a in args]
    code, stdout, stderr = _plot(capsys, *args, "--dpi", "60", "-o", out)  # a low resolution draws faster
    assert code == 0, stderr
    width, height = _png(out)
    assert width >= 6 * 60 and height >= 4 * 60  # these figures are at least 6 x 4 inches
    assert stdout.strip() == f"wrote {out}"


def test_schedule_of_a_run_shows_the_rates_it_logged_on_eq3(trained_run, tmp_path, capsys):
    from tformer.viz.curves import logged_learning_rates, read_metrics

    logged = logged_learning_rates(read_metrics(trained_run / "metrics.jsonl"))
    assert len(logged) == 6  # 60 steps, a line every 10
    code, _, _ = _plot(capsys, "schedule", trained_run, "-o", tmp_path / "schedule.svg")
    svg = (tmp_path / "schedule.svg").read_text(encoding="utf-8")
    assert code == 0 and "logged by the run (metrics.jsonl)" in svg and "warmup_steps = 20" in svg
    from tformer.training.schedule import noam_lr

    for step, lr in logged:  # the trainer's rates are Eq. 3 of the recipe (tiny preset: d_model 32, warm-up 20)
        assert lr == pytest.approx(noam_lr(step, 32, 20))


@pytest.mark.parametrize("args,message", [
    (["curves", "NOWHERE"], "run directory not found"),
    (["attention", "NOWHERE", "--text", TEXT], "run directory not found"),
    (["curves", "DATA"], "no training metrics"),
    (["attention", "RUN", "--text", "  "], "non-empty sentence"),
    (["attention", "RUN", "--text", TEXT, "--target", "drei", "--layer", "3"], "layer 3 does not exist"),
    (["attention", "RUN", "--text", TEXT, "--target", "drei", "--head", "9"], "head 9 does not exist"),
    (["curves", "RUN", "-o", "OUT/x.gif"], "use a .png, .svg or .pdf name"),
    (["curves", "RUN", "-o", "OUT/missing/x.png"], "folder not found"),
    (["beam", "RUN", "--text", TEXT, "--beam", "1"], "beam size of 2 or more"),
    (["masks", "RUN", "--text", "one", "--target", "eins", "--target", "zwei"], "got 2 targets for 1"),
    (["schedule", "NOWHERE.yaml"], "config file not found"),
    (["schedule", "DATA"], "not a run directory"),
    (["positional", "--d-model", "33"], "must be even"),
    (["attention", "RUN", "--text", TEXT, "--kind", "encoder", "--guided-band"], "on cross-attention only"),
    (["attention", "RUN", "--text", TEXT, "--guided-band", "0"], "with g > 0"),
])
def test_bad_input_exits_2_with_one_line(trained_run, tmp_path, capsys, args, message):
    args = [a.replace("NOWHERE", str(tmp_path / "nowhere")).replace("DATA", str(trained_run.parent))
            .replace("RUN", str(trained_run)).replace("OUT", str(tmp_path)) for a in args]
    code, stdout, stderr = _plot(capsys, *args, *([] if "-o" in args else ["-o", tmp_path / "x.png"]))
    assert code == 2 and not stdout
    assert len(stderr.strip().splitlines()) == 1 and message in stderr and stderr.startswith("tformer: error: ")
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


@pytest.mark.parametrize("picture,feature", [
    ("attention", "encoder-decoder attention maps"), ("beam", "beam search"), ("masks", "greedy search"),
])
def test_a_model_without_what_the_picture_needs_is_refused_in_the_one_form(trained_run, tmp_path, capsys, picture,
                                                                           feature):
    from tformer.models.cmlm.config import CMLMConfig
    from tformer.models.cmlm.model import CMLM

    vocabs = Translator.from_pretrained(trained_run).vocabs
    Translator(CMLM(CMLMConfig.tiny(vocab_size=vocabs.src.vocab_size)), vocabs).save_pretrained(tmp_path / "cmlm")
    code, stdout, stderr = _plot(capsys, picture, tmp_path / "cmlm", "--text", TEXT, "-o", tmp_path / "x.png")
    assert code == 2 and not stdout and not (tmp_path / "x.png").exists()
    assert stderr.strip() == (f"tformer: error: tformer plot {picture} needs {feature}, but this model (a "
                              "non-autoregressive CMLM) supports only mask-predict (non-autoregressive decoding)")
    if picture == "attention":  # a picture that needs no decoding feature is drawn for any encoder-decoder
        code, stdout, _ = _plot(capsys, "positional", tmp_path / "cmlm", "-o", tmp_path / "p.png")
        assert code == 0 and (tmp_path / "p.png").is_file()


def test_argparse_rejects_an_unknown_kind_or_head(trained_run, tmp_path, capsys):
    for bad, message in [(["--kind", "decoder"], "invalid choice: 'decoder'"), (["--head", "all"], "'grid' or 'mean'")]:
        with pytest.raises(SystemExit) as e:
            main(["plot", "attention", str(trained_run), "--text", TEXT, *bad, "-o", str(tmp_path / "x.png")])
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_the_installed_command_exits_2_with_one_line(tmp_path):
    """The one test of the command as a process (the interpreter, its exit status, its streams)."""
    r = tformer_subprocess("plot", "curves", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.png"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [f"tformer: error: run directory not found: {tmp_path / 'nowhere'}"]


def test_without_matplotlib_plot_says_how_to_install_it(trained_run, tmp_path, capsys, monkeypatch):
    # as in a process that never imported them: matplotlib cannot be imported, tformer.viz is imported afresh
    for name in [m for m in sys.modules if m.split(".")[0] in ("matplotlib", "mpl_toolkits") or
                 m.startswith("tformer.viz")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delattr("tformer.viz", raising=False)
    code, _, stderr = _plot(capsys, "curves", trained_run, "-o", tmp_path / "c.png")
    assert code == 2 and not (tmp_path / "c.png").exists()
    assert stderr.strip() == "tformer: error: tformer plot needs matplotlib: pip install 'tformer[viz]'"


def test_demo_writes_the_cross_attention_picture_into_its_run(tmp_path, capsys):
    run_dir = tmp_path / "demo"
    # A 4-step model says nonsense until its length limit: model.max_len=20 keeps that (and the picture) short.
    code = main(["demo", "--run-dir", str(run_dir), "--train-size", "100", "--test-size", "3", "--beam", "2",
                 "--no-progress", "train.max_steps=4", "train.eval_every=4", "train.bleu_samples=0",
                 "model.d_model=32", "model.d_ff=64", "model.max_len=20", "data.max_len=18"])
    stdout = capsys.readouterr().out
    assert code == 0
    summary = json.loads(stdout.strip().splitlines()[-1])
    picture = run_dir / "cross_attention.png"
    assert summary["cross_attention"] == str(picture)
    assert stdout.strip().splitlines()[-2].startswith("cross-attention of ") and str(picture) in stdout
    width, height = _png(picture)
    assert width >= 600 and height >= 400
