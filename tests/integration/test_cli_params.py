import json

from cli_helpers import tformer_cli as _tformer


def test_params_prints_counts_within_4_percent_of_the_paper():
    r = _tformer("params")
    assert r.returncode == 0, r.stderr
    rows = {row["preset"]: row for row in map(json.loads, r.stdout.splitlines())}
    assert abs(rows["base"]["relative_difference"]) < 0.04
    assert abs(rows["big"]["relative_difference"]) < 0.04


def test_bad_argument_exits_2():
    assert _tformer("params", "--vocab-size", "many").returncode == 2
