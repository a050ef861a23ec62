"""The dictionaries' per-user cache: a process after the first reads the built sets from plain files, and a
cache file that is cut short, edited or cannot be written never changes what the recognizers see."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clinical_pipelines.deid import lexicons

LOADERS = ["common_words", "given_names", "surnames", "country_names", "place_names", "drug_names"]


def _built(name: str) -> frozenset[str]:
    """The set built from the packages' own files, past both the process cache and the disk cache."""
    return getattr(lexicons, name).__wrapped__.__wrapped__()


def _load_in_fresh_process(cache_home: Path) -> dict[str, int]:
    code = (
        "import json\nfrom clinical_pipelines.deid import lexicons\n"
        f"print(json.dumps({{n: len(getattr(lexicons, n)()) for n in {LOADERS!r}}}))"
    )
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home))
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    import json

    return json.loads(out.stdout)


def test_a_second_process_reads_the_same_sets_from_the_cache(tmp_path: Path) -> None:
    first = _load_in_fresh_process(tmp_path)
    files = sorted((tmp_path / "clinical-pipelines" / "lexicons").glob("*.txt"))
    assert {f.name.split("-")[0] for f in files} == set(LOADERS)
    stamps = {f: f.stat().st_mtime_ns for f in files}
    assert _load_in_fresh_process(tmp_path) == first
    assert {f: f.stat().st_mtime_ns for f in files} == stamps  # read, not rebuilt
    for name in ("given_names", "country_names", "surnames"):
        cached = lexicons._read_cached(next(f for f in files if f.name.startswith(name + "-")))
        assert cached == _built(name)
        assert first[name] == len(cached) > 0


def test_a_cut_or_edited_cache_file_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls: list[int] = []

    def sample() -> frozenset[str]:
        calls.append(1)
        return frozenset({"okonkwo", "przybylski", "dall'acqua"})

    load = lexicons._cached(sample)
    assert load() == sample()
    path = next((tmp_path / "clinical-pipelines" / "lexicons").glob("sample-*.txt"))
    text = path.read_text(encoding="utf-8")
    for damaged in (text[: len(text) // 2], text.replace("okonkwo\n", ""), "przybylski\n#end 1x"):
        path.write_text(damaged, encoding="utf-8")
        assert lexicons._read_cached(path) is None
        calls.clear()
        assert lexicons._cached(sample)() == sample()  # a new process: built again from the source
        assert calls
        assert lexicons._read_cached(path) == sample()  # and the file is whole again


def test_an_unwritable_cache_only_costs_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    load = lexicons._cached(lambda: frozenset({"halloran"}))
    assert load() == frozenset({"halloran"})
    assert not list(tmp_path.rglob("*.tmp"))
