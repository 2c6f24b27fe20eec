"""Model.backend is the short name a program can branch on ("cpu" or "cuda", "auto" decided);
Model.backend_description says the same in words for people."""

import re

import voxtral
from conftest import BACKEND, SOURCE

DEMO = SOURCE / "models" / "demo"


def test_backend_is_the_name_asked_for(model):
    assert model.backend == BACKEND
    assert repr(model).endswith(f", backend={BACKEND!r})")


def test_auto_is_decided_to_cpu_or_cuda():
    with voxtral.Model(DEMO, threads=1) as m:
        assert m.backend in ("cpu", "cuda")
        assert m.backend_description.startswith(m.backend + " (")


def test_the_cpu_description_names_the_threads_and_kernels():
    with voxtral.Model(DEMO, backend="cpu", threads=3) as m:
        assert m.backend == "cpu"
        assert re.fullmatch(r"cpu \(3 threads, (avx512bf16(\+amx)?|avx512|avx2|generic) kernels\)", m.backend_description)
    with voxtral.Model(DEMO, backend="cpu", threads=1, precision="fast") as m:
        assert ", fast precision (BF16" in m.backend_description, m.backend_description
