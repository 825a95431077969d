"""Tokenizer built from the GGUF vocabulary, and the chat template."""
import pytest


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


@pytest.mark.parametrize("messages", [[], [{"role": "user"}], ["hi"]])
def test_malformed_messages_raise(course_model, messages):
    _, tok = course_model
    with pytest.raises(ValueError, match="messages must be"):
        tok.apply_chat_template(messages)


def test_decode_rejects_ids_outside_vocabulary(course_model):
    _, tok = course_model
    with pytest.raises(ValueError, match=r"\[0, 49151\]"):
        tok.decode([5, 49152])


def test_encode_rejects_non_strings(course_model):
    _, tok = course_model
    with pytest.raises(ValueError, match="string"):
        tok.encode(["not", "a", "string"])
