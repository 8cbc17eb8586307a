"""Ingest a folder of mixed files into a KB (tiny BERT embedder), re-ingest incrementally, search it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.config import load_config
from ragtune.rag.ingest import IngestConfig, ingest
from ragtune.rag.loaders import LoadError, load_file


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def current(kb: Path) -> Path:
    """The generation folder the knowledge base uses now."""
    return kb / json.loads((kb / "kb.json").read_text())["generation"]


def make_pdf(path: Path, lines: list[str]) -> Path:
    """A minimal valid one-page PDF whose text layer holds `lines` (Helvetica, one line each)."""
    text = " ".join(f"({line}) Tj 0 -20 Td" for line in lines)
    stream = f"BT /F1 12 Tf 72 720 Td {text} ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def make_docx(path: Path, paragraphs: list[str]) -> Path:
    import docx

    d = docx.Document()
    for p in paragraphs:
        d.add_paragraph(p)
    d.save(str(path))
    return path


@pytest.fixture
def docs(tmp_path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "heart.txt").write_text("The heart pumps blood through the body.\n\nIt beats about seventy times a "
                                    "minute at rest.", encoding="utf-8")
    (root / "bones.md").write_text("# Bones\n\nBone tissue is renewed all the time.\n", encoding="utf-8")
    (root / "sub" / "skin.html").write_text("<html><head><title>Skin</title><style>p{}</style></head><body>"
                                            "<h1>Skin</h1><p>The skin is the <b>largest</b> organ.</p>"
                                            "<script>var x = 1;</script></body></html>", encoding="utf-8")
    make_pdf(root / "liver.pdf", ["The liver filters the blood.", "It stores glycogen."])
    make_docx(root / "lungs.docx", ["The lungs exchange oxygen.", "They sit in the chest."])
    (root / "corpus.jsonl").write_text(json.dumps({"_id": "k1", "title": "Kidney", "text": "Kidneys make urine."})
                                       + "\n", encoding="utf-8")
    (root / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage without xref")
    (root / "image.png").write_bytes(b"\x89PNG not supported")
    return root


def cfg(docs: Path, kb: Path, tiny_bert: Path, *extra: str) -> IngestConfig:
    return load_config(IngestConfig, None, [f"folder={docs}", f"out={kb}", f"embedder.model={tiny_bert}",
                                            "chunk.max_tokens=40", "chunk.overlap_tokens=8", *extra])


def test_loaders_extract_text(docs):
    assert "filters the blood" in load_file(docs / "liver.pdf", docs)[0].text
    assert load_file(docs / "lungs.docx", docs)[0].text == "The lungs exchange oxygen.\n\nThey sit in the chest."
    html = load_file(docs / "sub" / "skin.html", docs)[0]
    assert html.source == "sub/skin.html" and html.title == "Skin"
    assert "The skin is the largest organ." in html.text and "var x" not in html.text
    [k] = load_file(docs / "corpus.jsonl", docs)
    assert k.source == "corpus.jsonl#k1" and k.text == "Kidney\n\nKidneys make urine."
    with pytest.raises(LoadError, match=r"broken\.pdf: cannot read PDF"):
        load_file(docs / "broken.pdf", docs)


def test_ingest_reports_corrupt_pdf_and_reingests_only_changes(docs, tmp_path, tiny_bert):
    kb = tmp_path / "kb"
    s = ingest(cfg(docs, kb, tiny_bert))
    assert s["files_new"] == 7 and s["files_failed"] == 1
    assert len(s["failed"]) == 1 and s["failed"][0].startswith("broken.pdf: cannot read PDF")
    assert s["unsupported"] == ["image.png"]
    chunks = read_jsonl(current(kb) / "chunks.jsonl")
    assert {c["file"] for c in chunks} == {"heart.txt", "bones.md", "sub/skin.html", "liver.pdf", "lungs.docx",
                                           "corpus.jsonl"}
    assert s["chunks_embedded"] == len(chunks) == s["vectors_in_store"]
    # offsets index the source text: for .txt files, the file itself
    heart = (docs / "heart.txt").read_text(encoding="utf-8")
    for c in chunks:
        if c["file"] == "heart.txt":
            assert heart[c["start"]:c["end"]] == c["text"]
    documents = {d["source"]: d["text"] for d in read_jsonl(current(kb) / "documents.jsonl")}
    assert all(documents[c["source"]][c["start"]:c["end"]] == c["text"] for c in chunks)

    # change one file, delete another: only the changed file is embedded again
    (docs / "heart.txt").write_text("The heart has four chambers.", encoding="utf-8")
    (docs / "bones.md").unlink()
    s2 = ingest(cfg(docs, kb, tiny_bert))
    assert (s2["files_new"], s2["files_changed"], s2["files_unchanged"], s2["files_deleted"]) == (1, 1, 4, 1)
    assert s2["files_failed"] == 1  # broken.pdf is reported again (it is never in the manifest)
    assert s2["chunks_embedded"] == 1  # the one chunk of the changed heart.txt
    chunks2 = read_jsonl(current(kb) / "chunks.jsonl")
    assert "bones.md" not in {c["file"] for c in chunks2}
    assert [c["text"] for c in chunks2 if c["file"] == "heart.txt"] == ["The heart has four chambers."]
    gone = sum(c["file"] in {"heart.txt", "bones.md"} for c in chunks)  # replaced by heart.txt's single new chunk
    assert s2["vectors_in_store"] == len(chunks2) == len(chunks) - gone + 1

    s3 = ingest(cfg(docs, kb, tiny_bert))
    assert s3["chunks_embedded"] == 0 and s3["files_unchanged"] == 5

    from ragtune.config import ConfigError

    with pytest.raises(ConfigError, match="rebuild=true"):
        ingest(cfg(docs, kb, tiny_bert, "chunk.max_tokens=30"))
    with pytest.raises(ConfigError, match="embedder.backend"):
        ingest(cfg(docs, tmp_path / "kb-onnx", tiny_bert, "embedder.backend=onnx"))
    assert not (tmp_path / "kb-onnx").exists()


def test_search_is_hybrid_and_excludes_files(docs, tmp_path, tiny_bert):
    from ragtune.rag.kb import KnowledgeBase

    kb_path = tmp_path / "kb"
    ingest(cfg(docs, kb_path, tiny_bert))
    kb = KnowledgeBase.open(kb_path)
    try:
        hits = kb.search("liver filters blood glycogen", top=3)
        assert hits[0].chunk["file"] == "liver.pdf"
        assert hits[0].ranks.get("bm25") == 1  # the random tiny encoder is not trusted; BM25 finds it
        assert all(h.chunk["file"] != "liver.pdf" for h in kb.search("liver filters blood", top=3,
                                                                      exclude={"liver.pdf"}))
        ex = kb.excerpt(hits[0].chunk_id, margin=5)
        assert ex["text"][ex["start"]:ex["end"]] == hits[0].chunk["text"]
        dense_only = kb.search("liver filters blood glycogen", k_bm25=0, top=3)
        assert all(set(h.ranks) == {"dense"} for h in dense_only)
        kb.encoder = None  # BM25 only must not encode the question
        bm25_only = kb.search("liver filters blood glycogen", k_dense=0, top=3)
        assert all(set(h.ranks) == {"bm25"} for h in bm25_only) and bm25_only[0].chunk["file"] == "liver.pdf"
        with pytest.raises(ValueError, match="nothing to search"):
            kb.search("liver", k_dense=0, k_bm25=0)
    finally:
        kb.close()
