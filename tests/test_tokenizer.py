"""Tokenizer built from the GGUF vocabulary, and the chat template (rendered in the jinja sandbox)."""
import time

import pytest

from course_utils.tokenizer import ChatTemplate, ChatTokenizer


def test_round_trip_and_known_ids(course_model):
    _, tok = course_model
    text = "Hello world! Tokenizers split 2026 into digits, and café into bytes."
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.encode("Hello world") == [19556, 905]
    assert tok.token_strings(tok.encode(" 42")) == [" ", "4", "2"]  # SmolLM splits digits one by one


def test_special_tokens_are_single_ids(course_model):
    _, tok = course_model
    assert tok.encode("<|im_start|>") == [1]
    assert tok.encode("<|im_end|>") == [2]
    assert tok.eos_id == 2 and tok.vocab_size == 49152


def test_chat_template_renders_chatml_with_default_system(course_model):
    _, tok = course_model
    text = tok.render_chat([{"role": "user", "content": "Hi"}])
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\n"
                    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    ids = tok.apply_chat_template([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert tok.decode(ids).startswith("<|im_start|>system\nBe brief.<|im_end|>")
    no_prompt = tok.render_chat([{"role": "user", "content": "Hi"}], add_generation_prompt=False)
    assert not no_prompt.endswith("assistant\n")


@pytest.mark.parametrize("messages, error, message", [
    ([], ValueError, "messages must be .* empty list"),
    ([{"role": "user"}], ValueError, "message 0 has keys"),
    (["hi"], TypeError, "message 0 is a str"),
    ("hi", TypeError, "messages must be .* got str"),
    ([{"role": "user", "content": 42}], TypeError, "message 0 content must be a string, got int.*str()"),
    ([{"role": "user", "content": ["a", "b"]}], TypeError, "content must be a string, got list"),
    ([{"role": "tool", "content": "x"}], ValueError, "role 'tool'; allowed roles: system, user, assistant"),
])
def test_malformed_messages_raise(course_model, messages, error, message):
    _, tok = course_model
    with pytest.raises(error, match=message):
        tok.apply_chat_template(messages)


def test_decode_rejects_ids_outside_vocabulary(course_model):
    _, tok = course_model
    with pytest.raises(ValueError, match=r"\[0, 49151\]"):
        tok.decode([5, 49152])


def test_encode_rejects_non_strings(course_model):
    _, tok = course_model
    with pytest.raises(TypeError, match="string"):
        tok.encode(["not", "a", "string"])


# Each payload would run code, read secrets, change the caller's data or never finish with a plain jinja2.Environment.
PAYLOADS = {
    "os.system via cycler globals": "{{ cycler.__init__.__globals__.os.system('touch MARKER') }}",
    "os.popen via lipsum globals": "{{ lipsum.__globals__['os'].popen('touch MARKER').read() }}",
    "subclasses walk": "{{ messages.__class__.__mro__[1].__subclasses__() }}",
    "function globals": "{{ self.__init__.__globals__ }}",
    "list mutation": "{% set x = messages.append({'role': 'user', 'content': 'injected'}) %}{{ messages|length }}",
    "dict mutation": "{% set x = messages[0].update({'content': 'pwned'}) %}{{ messages[0].content }}",
    "huge range": "{% for i in range(10**10) %}x{% endfor %}",
    "huge string": "{{ 'x' * 10**10 }}",
    "huge power": "{{ 10 ** (10 ** 10) }}",
}


@pytest.mark.parametrize("name", PAYLOADS)
def test_chat_template_runs_in_the_sandbox(course_model, tmp_path, monkeypatch, name):
    _, tok = course_model
    monkeypatch.chdir(tmp_path)
    template = PAYLOADS[name].replace("MARKER", str(tmp_path / "pwned.txt"))
    evil = ChatTokenizer(tok.backend, ChatTemplate(template, origin="/models/evil/tokenizer_config.json"), eos_id=2)
    messages = [{"role": "user", "content": "Hi"}]
    start = time.perf_counter()
    with pytest.raises(ValueError, match="chat template of /models/evil/tokenizer_config.json") as caught:
        evil.render_chat(messages)
    assert time.perf_counter() - start < 5.0  # refused at once, not after minutes of work
    assert "sandbox" in str(caught.value) or "failed to render" in str(caught.value)
    assert not (tmp_path / "pwned.txt").exists()
    assert messages == [{"role": "user", "content": "Hi"}]


def test_broken_template_names_its_source(course_model):
    _, tok = course_model
    broken = ChatTokenizer(tok.backend, "{% for m in messages %}", eos_id=2, source="my-model.gguf")
    assert broken.encode("Hello world") == [19556, 905]  # the model still loads and works on plain text
    with pytest.raises(ValueError, match="chat template of my-model.gguf is not a valid jinja template"):
        broken.render_chat([{"role": "user", "content": "Hi"}])
    with pytest.raises(TypeError, match="chat_template must be a string or None, got int"):
        ChatTokenizer(tok.backend, 5, eos_id=2)


def test_sandbox_still_renders_ordinary_templates(course_model):
    _, tok = course_model
    template = ("{% for m in messages %}{{ m['role'] | upper }}: {{ m.content }}{{ '-' * 3 }}{% endfor %}"
                "{% if add_generation_prompt %}{{ range(3) | list | length }}{% endif %}")
    plain = ChatTokenizer(tok.backend, template, eos_id=2)
    assert plain.render_chat([{"role": "user", "content": "Hi"}]) == "USER: Hi---3"



def test_raise_exception_in_a_template_becomes_a_clear_error(course_model):
    _, tok = course_model
    strict = ChatTokenizer(tok.backend, "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}"
                                        "{% endif %}ok", eos_id=2, source="strict.jinja")
    assert strict.render_chat([{"role": "user", "content": "x"}]) == "ok"
    with pytest.raises(ValueError, match="chat template of strict.jinja failed to render.*user first"):
        strict.render_chat([{"role": "system", "content": "x"}])
