"""Tokenizer: byte-level BPE built from the GGUF vocabulary, plus the model's chat template."""
from __future__ import annotations

from collections.abc import Sequence

import jinja2
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

SPECIAL_TOKEN_TYPE = 3  # GGUF token_type for control tokens such as <|im_start|>


def build_bpe_tokenizer(tokens: list[str], merges: list[str], token_types: list[int]) -> Tokenizer:
    """A Hugging Face ``tokenizers`` BPE from GGUF vocab and merges (SmolLM pre-tokenisation: digits one by one)."""
    if len(tokens) != len(token_types):
        raise ValueError(f"{len(tokens)} tokens but {len(token_types)} token types")
    vocab = {token: index for index, token in enumerate(tokens)}
    pairs = [tuple(merge.split(" ", 1)) for merge in merges]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    specials = [AddedToken(tok, special=True, normalized=False)
                for tok, kind in zip(tokens, token_types) if kind == SPECIAL_TOKEN_TYPE]
    tokenizer.add_special_tokens(specials)
    return tokenizer


class ChatTokenizer:
    """Text <-> token ids, and chat messages -> ids through the model's own chat template."""

    def __init__(self, tokenizer: Tokenizer, chat_template: str | None, eos_id: int | None, bos_id: int | None = None):
        self.backend = tokenizer
        self.chat_template = chat_template
        self.eos_id = eos_id
        self.bos_id = bos_id
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self._template = (jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(chat_template)
                          if chat_template else None)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``. Special tokens written in the text (e.g. ``<|im_end|>``) become their ids."""
        if not isinstance(text, str):
            raise ValueError(f"encode expects a string, got {type(text).__name__}")
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; raises ValueError on ids outside the vocabulary."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids must lie in [0, {self.vocab_size - 1}], got {bad[:5]}")
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """Each id decoded on its own, for showing a text token by token."""
        return [self.decode([i]) for i in ids]

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The chat template rendered to text."""
        if self._template is None:
            raise ValueError("this model has no chat template; use plain text prompts")
        if not messages or not all(isinstance(m, dict) and {"role", "content"} <= m.keys() for m in messages):
            raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
        special = {name: self.backend.id_to_token(i) if i is not None else ""
                   for name, i in (("bos_token", self.bos_id), ("eos_token", self.eos_id))}
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt, **special)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        """Token ids of the rendered chat, ending with the assistant header when ``add_generation_prompt``."""
        return self.encode(self.render_chat(messages, add_generation_prompt))
