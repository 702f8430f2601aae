"""`tformer translate` answers each line as it is entered when stdin is a terminal (a pty, in a process of its own)
or with --interactive (a pipe): each answer is read before stdin is closed."""

import os
import pty
import select
import subprocess
import sys
import threading

from cli_helpers import tformer_cli


def _readline(stream, timeout: float = 60.0) -> bytes:
    """One line of a process's stdout, failing (instead of hanging) when none comes within ``timeout`` s."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "no answer while stdin is still open"
    return stream.readline()


def _start(run_dir, *args, stdin) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tformer.cli.main", "translate", str(run_dir), "--beam", "2", *args],
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _expected(run_dir, *lines) -> list[bytes]:
    r = tformer_cli("translate", str(run_dir), "--beam", "2", input="".join(line + "\n" for line in lines))
    assert r.returncode == 0, r.stderr
    return [line.encode() + b"\n" for line in r.stdout.split("\n")[:-1]]


def test_a_terminal_on_stdin_gets_each_answer_at_once(trained_run):
    expected = _expected(trained_run, "seven", "forty two")
    main, child = pty.openpty()  # a terminal: isatty() is True in the process
    proc = _start(trained_run, stdin=child)
    os.close(child)
    try:
        os.write(main, b"seven\n")
        assert _readline(proc.stdout) == expected[0]
        os.write(main, b"forty two\n")
        assert _readline(proc.stdout) == expected[1]
        os.write(main, b"\x04")  # Ctrl-D at the start of a line: end of input
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        proc.kill()
        os.close(main)


def test_interactive_flag_answers_each_line_of_a_pipe(trained_run, monkeypatch):
    """--interactive on a real pipe (os.pipe; main() in a thread of this process, which saves a start-up): each
    answer comes, flushed, while the pipe is still open."""
    from tformer.cli.main import main

    expected = _expected(trained_run, "seven", "", "nine hundred")
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    monkeypatch.setattr(sys, "stdin", open(in_read, encoding="utf-8"))  # closed at the end
    monkeypatch.setattr(sys, "stdout", open(out_write, "w", encoding="utf-8"))
    codes = []
    thread = threading.Thread(target=lambda: codes.append(main(["translate", str(trained_run), "--beam", "2",
                                                                 "--interactive", "--scores"])))
    thread.start()
    answers = os.fdopen(out_read, "rb")
    scored = []
    try:
        for line in (b"seven\n", b"\n", b"nine hundred\n"):
            os.write(in_write, line)
            scored.append(_readline(answers))
    finally:
        os.close(in_write)
        thread.join(60)
        sys.stdout.close()
        sys.stdin.close()
        answers.close()
    assert codes == [0] and [s.split(b"\t")[0] for s in scored] == [e.rstrip(b"\n") for e in expected]
    assert all(len(s.split(b"\t")) == 2 for s in scored)
    r = tformer_cli("translate", str(trained_run), "--interactive", "--output", "x.txt", input="seven\n")
    assert r.returncode == 2 and "--interactive reads stdin and answers on stdout" in r.stderr
