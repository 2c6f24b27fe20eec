"""The README's Python example (section "Python") runs and prints what the README says it
prints: word for word, times within 0.1 s (their last digit may round either way on another
machine's kernels)."""

import re
import subprocess
import sys

from conftest import SOURCE


def readme_example():
    text = (SOURCE / "README.md").read_text()
    section = text[text.index("\n## Python\n") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    printed = re.search(r"prints\n\n```text\n(.*?)```", section, re.S).group(1)
    return code, printed


def same_line(got: str, want: str) -> bool:
    g, w = got.split(" "), want.split(" ")
    if len(g) != len(w):
        return False
    for a, b in zip(g, w):
        if re.fullmatch(r"\d+\.\d", b):
            if not re.fullmatch(r"\d+\.\d", a) or abs(float(a) - float(b)) > 0.1 + 1e-9:
                return False
        elif a != b:
            return False
    return True


def test_the_readme_example_prints_what_the_readme_says():
    code, printed = readme_example()
    run = subprocess.run([sys.executable, "-c", code], cwd=SOURCE, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    got, want = run.stdout.splitlines(), printed.splitlines()
    assert len(got) == len(want), run.stdout
    for g, w in zip(got, want):
        assert same_line(g, w), (g, w)
