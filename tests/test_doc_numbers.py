"""Every performance number the docs quote comes from benchmarks/results/*.json through
benchmarks/doc_numbers.py: a doc whose marked number differs from its results file fails."""
import re

import pytest

from benchmarks import doc_numbers

DOCS = doc_numbers.documents()


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_marked_numbers_match_the_results(path):
    assert doc_numbers.differences(path) == []


def test_every_marker_names_a_known_number_and_every_number_is_quoted():
    used = set()
    for path in DOCS:
        text = path.read_text()
        doc_numbers.render(text)  # raises KeyError on an unknown name
        used |= doc_numbers.used(text)
    assert used == set(doc_numbers.NUMBERS) | set(doc_numbers.TABLES)


def test_the_headline_speedup_is_the_same_everywhere():
    want = doc_numbers.NUMBERS["seed_mlp_train_vs_pytorch"]()
    for name in ("README.md", "index.md", "performance.md"):
        (path,) = [p for p in DOCS if p.name == name]
        text = path.read_text()
        quoted = re.findall(r"<!-- number:seed_mlp_train_vs_pytorch -->(.*?)<!--", text)
        assert quoted and set(quoted) == {want}, name
        # no speedup over PyTorch typed by hand beside the marked one
        bare = doc_numbers.NUMBER.sub("", text)
        assert not re.search(r"\b\d+(\.\d+)?x faster than (a )?PyTorch", bare), name


def test_a_changed_number_is_caught(tmp_path):
    text = ("speed <!-- number:seed_mlp_train_vs_pytorch -->6.6x<!-- /number -->\n"
            "<!-- table:blas_peak -->\n| stale |\n<!-- /table -->\n")
    doc = tmp_path / "doc.md"
    doc.write_text(text)
    problems = doc_numbers.differences(doc)
    assert len(problems) == 2 and "reads '6.6x'" in problems[0] and "blas_peak" in problems[1]
    rendered = doc_numbers.render(text)
    doc.write_text(rendered)
    assert doc_numbers.differences(doc) == []
    assert "-->9.2x<!--" in rendered


def test_an_unknown_name_is_refused():
    with pytest.raises(KeyError, match="unknown number 'nope'"):
        doc_numbers.render("<!-- number:nope -->1x<!-- /number -->")
