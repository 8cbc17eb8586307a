"""Every prompt ragtune writes, in one place: chat templates, SFT records -> messages, the doc -> query prompt
(zero- or few-shot, and the RL stages' user turn), and the answerer's grounded-answer prompt and refusal phrasings.

Training and generation render prompts through the same code, so a fine-tuned model sees at inference
exactly the context it was trained on:

    template = use_template(tokenizer, "auto")         # the model's own template, or "chatml", "llama2", ...
    messages = query_messages(doc_text, shots=[(doc, query), ...])
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragtune.config import ConfigError
from ragtune.data.records import Alpaca, Doc, ShareGPT

Message = dict[str, str]


@dataclass(frozen=True)
class Template:
    """A named chat template (Jinja, as `tokenizer.chat_template`) and the tokens that end an answer."""

    jinja: str
    stop: tuple[str, ...] = ()
    """Tokens that end an assistant turn besides the tokenizer's eos; each must be one token of the vocabulary."""


_SYSTEM_FIRST = "{% if messages and messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}" \
                "{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"

TEMPLATES: dict[str, Template] = {
    # LLaMA-Factory's "default": Human/Assistant turns, each answer closed by eos.
    "default": Template(
        "{% for m in messages %}{% if m['role'] == 'system' %}System: {{ m['content'] }}\n"
        "{% elif m['role'] == 'user' %}Human: {{ m['content'] }}\nAssistant:"
        "{% else %} {{ m['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}"),
    "alpaca": Template(
        _SYSTEM_FIRST + "{% if sys %}{{ sys }}\n\n{% endif %}{% for m in msgs %}{% if m['role'] == 'user' %}"
        "### Instruction:\n{{ m['content'] }}\n\n### Response:\n{% else %}{{ m['content'] }}{{ eos_token }}\n\n"
        "{% endif %}{% endfor %}"),
    "chatml": Template(
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
        stop=("<|im_end|>",)),
    "llama2": Template(
        _SYSTEM_FIRST + "{% for m in msgs %}{% if m['role'] == 'user' %}{{ bos_token }}[INST] "
        "{% if loop.first and sys %}<<SYS>>\n{{ sys }}\n<</SYS>>\n\n{% endif %}{{ m['content'] }} [/INST]"
        "{% else %} {{ m['content'] }} {{ eos_token }}{% endif %}{% endfor %}"),
    # Gemma's turns (its base models ship no chat template); a system prompt opens the first user turn.
    "gemma": Template(
        "{{ bos_token }}" + _SYSTEM_FIRST + "{% for m in msgs %}{% if m['role'] == 'user' %}"
        "<start_of_turn>user\n{% if loop.first and sys %}{{ sys }}\n\n{% endif %}{{ m['content'] }}<end_of_turn>\n"
        "{% else %}<start_of_turn>model\n{{ m['content'] }}<end_of_turn>\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}",
        stop=("<end_of_turn>",)),
}
"""`template: auto` uses the tokenizer's own chat template; these names work with any tokenizer (chatml and gemma
need their turn tokens in the vocabulary)."""


def use_template(tokenizer, name: str) -> list[int]:
    """Install template `name` on `tokenizer` ("auto" keeps its own); return the token ids that end an answer."""
    if name == "auto":
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f'key "template": the tokenizer of this model has no chat template; name one '
                              f'({", ".join(TEMPLATES)})')
        stop_tokens: tuple[str, ...] = ()
    else:
        if name not in TEMPLATES:
            raise ConfigError(f'key "template": unknown template "{name}"; allowed values: auto, '
                              f'{", ".join(TEMPLATES)}')
        tokenizer.chat_template = TEMPLATES[name].jinja
        stop_tokens = TEMPLATES[name].stop
    ids: list[int] = []
    for tok in stop_tokens:
        tid = tokenizer.convert_tokens_to_ids(tok)
        if tid is None or tid == tokenizer.unk_token_id:
            raise ConfigError(f'key "template": template "{name}" ends answers with {tok}, which is not a token of '
                              "this tokenizer; use template=auto or a template without special tokens (default, "
                              "alpaca, llama2)")
        ids.append(tid)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))


# ---------------------------------------------------------------- SFT records -> messages

ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def record_messages(rec: Alpaca | ShareGPT, where: str = "") -> list[Message]:
    """An alpaca or sharegpt record as chat messages, alternating user/assistant and ending with an answer."""
    msgs: list[Message] = []
    if rec.system:
        msgs.append({"role": "system", "content": rec.system})
    if isinstance(rec, Alpaca):
        for q, a in rec.history or []:
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        prompt = f"{rec.instruction}\n{rec.input}" if rec.input else rec.instruction
        return [*msgs, {"role": "user", "content": prompt}, {"role": "assistant", "content": rec.output}]
    for turn in rec.conversations:
        role = ROLE_MAP.get(turn.role)
        if role is None:
            raise ValueError(f'{where}: sharegpt role "{turn.role}" (tool use) is not supported by SFT in this '
                             "version; use human/gpt/system turns")
        if role == "system" and msgs:
            raise ValueError(f"{where}: a system turn must come first in the conversation")
        msgs.append({"role": role, "content": turn.value})
    chat = [m for m in msgs if m["role"] != "system"]
    for i, m in enumerate(chat):
        if m["role"] != ("user" if i % 2 == 0 else "assistant"):
            raise ValueError(f"{where}: sharegpt turns must alternate human, gpt, human, gpt, ... (turn {i + 1} is "
                             f'"{m["role"]}")')
    if not chat or chat[-1]["role"] != "assistant":
        raise ValueError(f"{where}: the conversation must end with a gpt turn (the answer to learn)")
    return msgs


# ---------------------------------------------------------------- doc -> query prompts

DEFAULT_INSTRUCTION = "{document}"
"""How a document becomes the user turn; `ragtune data convert` writes the same (instruction = document)."""
FEW_SHOT_SYSTEM = ("You write the search query a user would type to find the given document. "
                   "Answer with the query only, on one line.")


def document_text(doc: Doc) -> str:
    """Title and text joined by a space, as `ragtune data convert beir-sft` writes the training instruction."""
    return doc.content


def query_messages(document: str, instruction: str = DEFAULT_INSTRUCTION, system: str | None = None,
                   shots: Sequence[tuple[str, str]] = ()) -> list[Message]:
    """The chat for one document: optional system turn, then k (document, query) example turns, then the document."""
    msgs: list[Message] = [{"role": "system", "content": system}] if system else []
    for doc, query in shots:
        msgs += [{"role": "user", "content": instruction.replace("{document}", doc)},
                 {"role": "assistant", "content": query}]
    msgs.append({"role": "user", "content": instruction.replace("{document}", document)})
    return msgs


def truncate_tokens(tokenizer, text: str, max_tokens: int) -> str:
    """`text` cut to its first `max_tokens` tokens (unchanged when shorter)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)


RL_PROMPT_CHARS = 1200
"""Documents are cut to this many characters in the RL stages' prompts (bounded sequence length)."""


def user_turn(doc: Doc, tokenizer=None, max_doc_tokens: int | None = None) -> str:
    """The user turn the RL stages (reward model, PPO, DPO, GRPO) show the generator for `doc`.

    With a tokenizer and `max_doc_tokens` the document is cut exactly as `ragtune generate` cuts it (so the reward
    model and the policy read the prompt the queries were written from); else to RL_PROMPT_CHARS characters.
    """
    if tokenizer is not None and max_doc_tokens is not None:
        text = truncate_tokens(tokenizer, doc.content, max_doc_tokens)
    else:
        text = doc.content[:RL_PROMPT_CHARS]
    return DEFAULT_INSTRUCTION.replace("{document}", text)


# ---------------------------------------------------------------- grounded answers and refusals

ANSWER_PROMPTS = {
    "en": ("Answer the question using only the context below. If the context does not contain the answer, "
           "say that you cannot answer.\n\nContext:\n{context}\n\nQuestion: {question}"),
    "zh": ("请只根据下面的资料回答问题。如果资料中没有答案，请直接说明无法回答。"
           "\n\n资料：\n{context}\n\n问题：{question}"),
}
"""The answerer's user turn per language: `ragtune data convert squad-sft|webqa-sft` trains on it, `rag ask` and
`eval rag` render it."""
REFUSALS = {
    "en": ["The context does not contain the answer to this question.",
           "I cannot answer this question from the given context.",
           "The provided passage does not say, so I can't answer.",
           "There is not enough information in the context to answer this question.",
           "The context doesn't mention this; I don't know the answer from it."],
    "zh": ["根据提供的资料，无法回答这个问题。",
           "资料中没有提到相关信息，无法作答。",
           "提供的内容不包含这个问题的答案。",
           "抱歉，给定的资料不足以回答该问题。",
           "资料里找不到答案，我无法回答。"],
}
"""Refusal phrasings per language. The first is the canonical refusal: the converter trains on it alone by default,
so the refusal mass sits on one sequence and greedy decoding can say it; the others may be added for variety
(`refusals=[...]` in `ragtune data convert`). `ragtune.rag.refusal` scores them all as one class."""
CANONICAL_REFUSAL = {lang: phrasings[0] for lang, phrasings in REFUSALS.items()}
"""The one refusal per language that the converter writes by default and `rag ask` answers with."""


def format_contexts(contexts: Sequence[str]) -> str:
    """One context as is; several numbered `[1] ...` separated by blank lines (as `rag ask` prompts them)."""
    if len(contexts) == 1:
        return contexts[0]
    return "\n\n".join(f"[{i}] {c}" for i, c in enumerate(contexts, 1))


def refusal_phrasings(language: str, custom: Sequence[str] | None = None) -> list[str]:
    """The phrasings scored as refusals, canonical first: `custom`, else every phrasing of `REFUSALS`."""
    return list(custom) if custom else list(REFUSALS["zh" if language == "zh" else "en"])
