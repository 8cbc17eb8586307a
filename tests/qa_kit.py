"""A small SQuAD 2.0 file whose answers and passages are known by construction (the QA converter's tests)."""

from __future__ import annotations

import json
from pathlib import Path


def squad_file(path: Path, articles: int = 6) -> Path:
    data = []
    for a in range(articles):
        paragraphs = []
        for p in range(2):
            tag = f"{a}{p}"
            context = (f"Valeria{tag} is a town in Region{tag}. Its mayor is Mayor{tag} and its river is River{tag}. "
                       f"The town was founded in year {1000 + a * 10 + p}.")
            qas = [{"id": f"q{tag}-{k}", "question": f"What is the {what} of Valeria{tag}?",
                    "answers": [{"text": ans, "answer_start": context.index(ans)}], "is_impossible": False}
                   for k, (what, ans) in enumerate([("mayor", f"Mayor{tag}"), ("river", f"River{tag}"),
                                                    ("region", f"Region{tag}")])]
            qas.append({"id": f"q{tag}-x", "question": f"Who is the bishop of Valeria{tag}?", "answers": [],
                        "plausible_answers": [{"text": f"Mayor{tag}", "answer_start": 0}], "is_impossible": True})
            paragraphs.append({"context": context, "qas": qas})
        data.append({"title": f"Article {chr(65 + a)}", "paragraphs": paragraphs})
    path.write_text(json.dumps({"version": "v2.0", "data": data}))
    return path
