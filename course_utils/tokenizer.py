"""Tokenizer: byte-level BPE built from the GGUF vocabulary, plus the model's chat template (sandboxed).

A chat template is a jinja program that comes with the model file, so it is untrusted: it is compiled and rendered in
jinja2's ``ImmutableSandboxedEnvironment`` (as Hugging Face transformers does), which refuses access to private
attributes (``__globals__``, ``__init__``...), calls that change the messages, and oversized ``range()`` calls. Any
refusal or template error becomes a ``ValueError`` naming the model file the template came from.
"""
from __future__ import annotations

import operator
from collections.abc import Sequence

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

SPECIAL_TOKEN_TYPE = 3  # GGUF token_type for control tokens such as <|im_start|>
CHAT_ROLES = ("system", "user", "assistant")
MAX_TEMPLATE_OUTPUT = 1_000_000  # characters/items a single `*` in a template may build; a chat prompt is far smaller
MAX_TEMPLATE_EXPONENT = 256  # `a ** b` with |b| above this is refused (10 ** 10 ** 10 would never finish)


class ChatTemplate(str):
    """A chat template's text that remembers where it came from (a file path or model name), for error messages."""

    origin: str | None = None

    def __new__(cls, text: str, origin: str | None = None) -> ChatTemplate:
        template = super().__new__(cls, text)
        template.origin = origin
        return template


class _TemplateEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus limits on `*` and `**` so a template cannot build a huge string or number."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context, operator_name, left, right):
        if operator_name == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(count, int) \
                        and len(seq) * count > MAX_TEMPLATE_OUTPUT:
                    raise SecurityError(f"repetition builds {len(seq) * count:,} items (limit "
                                        f"{MAX_TEMPLATE_OUTPUT:,})")
            return operator.mul(left, right)
        if isinstance(right, (int, float)) and abs(right) > MAX_TEMPLATE_EXPONENT and abs(left) > 1:
            raise SecurityError(f"exponent {right} is too large (limit {MAX_TEMPLATE_EXPONENT})")
        return operator.pow(left, right)


def _raise_from_template(message: str) -> None:
    """``raise_exception(...)`` inside a template (a transformers convention): the template refuses the messages."""
    raise jinja2.TemplateError(f"the template refused these messages: {message}")


def _where(origin: str | None) -> str:
    return f"the chat template of {origin}" if origin else "the model's chat template"


def compile_chat_template(text: str, origin: str | None = None) -> jinja2.Template:
    """Compile ``text`` in the sandbox; a syntax error becomes a ValueError naming ``origin`` (file or model)."""
    if not isinstance(text, str):
        raise TypeError(f"a chat template must be a string, got {type(text).__name__} from {origin or 'the model'}")
    # the same settings as transformers' apply_chat_template, so a template renders the same text in both
    environment = _TemplateEnvironment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                       extensions=["jinja2.ext.loopcontrols"])
    environment.globals["raise_exception"] = _raise_from_template  # templates written for transformers call it
    try:
        return environment.from_string(text)
    except jinja2.TemplateError as error:
        raise ValueError(f"{_where(origin)} is not a valid jinja template ({type(error).__name__}: {error}); "
                         f"fix or remove the template in that file, or use plain text prompts") from error


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

    def __init__(self, tokenizer: Tokenizer, chat_template: str | None, eos_id: int | None, bos_id: int | None = None,
                 source: str | None = None):
        self.backend = tokenizer
        self.chat_template = chat_template
        self.eos_id = eos_id
        self.bos_id = bos_id
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        # where the template came from: explicit ``source``, else what the checkpoint reader recorded on the string
        self.source = source or getattr(chat_template, "origin", None)
        if chat_template is not None and not isinstance(chat_template, str):
            raise TypeError(f"chat_template must be a string or None, got {type(chat_template).__name__}")
        # a template that does not compile must not stop the model from loading: the error waits for render_chat
        self._template, self._template_error = None, None
        if chat_template:
            try:
                self._template = compile_chat_template(chat_template, self.source)
            except ValueError as error:
                self._template_error = error

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``. Special tokens written in the text (e.g. ``<|im_end|>``) become their ids."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a string, got {type(text).__name__}")
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
        """The chat template rendered to text (in the jinja sandbox; see the module docstring)."""
        if self._template_error is not None:
            raise self._template_error
        if self._template is None:
            raise ValueError("this model has no chat template; use plain text prompts")
        _check_messages(messages)
        special = {name: self.backend.id_to_token(i) if i is not None else ""
                   for name, i in (("bos_token", self.bos_id), ("eos_token", self.eos_id))}
        # the template sees copies, so even a template that slipped past the sandbox cannot change the caller's list
        copies = [dict(message) for message in messages]
        try:
            return self._template.render(messages=copies, add_generation_prompt=bool(add_generation_prompt), **special)
        except SecurityError as error:
            raise ValueError(f"{_where(self.source)} tried something the sandbox forbids ({error}); the template was "
                             f"refused and nothing ran. Use a model file you trust, or remove its chat template") \
                from error
        except (OverflowError, jinja2.TemplateError) as error:
            raise ValueError(f"{_where(self.source)} failed to render ({type(error).__name__}: {error}); fix the "
                             f"template in that file, or use plain text prompts") from error

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        """Token ids of the rendered chat, ending with the assistant header when ``add_generation_prompt``."""
        return self.encode(self.render_chat(messages, add_generation_prompt))


def _check_messages(messages: object) -> None:
    """Chat messages: a non-empty list of {'role': one of CHAT_ROLES, 'content': str} dicts."""
    shape = "a non-empty list of {'role': ..., 'content': ...} dicts"
    if not isinstance(messages, (list, tuple)):
        raise TypeError(f"messages must be {shape}, got {type(messages).__name__}")
    if not messages:
        raise ValueError(f"messages must be {shape}, got an empty list")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise TypeError(f"messages must be {shape}; message {index} is a {type(message).__name__}")
        if not {"role", "content"} <= message.keys():
            raise ValueError(f"messages must be {shape}; message {index} has keys {sorted(map(str, message))}")
        if message["role"] not in CHAT_ROLES:
            raise ValueError(f"message {index} has role {message['role']!r}; allowed roles: {', '.join(CHAT_ROLES)}")
        if not isinstance(message["content"], str):
            raise TypeError(f"message {index} content must be a string, got {type(message['content']).__name__}; "
                            f"convert it with str() or join the parts into one string")
