"""generate(): cached == uncached, batches with padding and per-row EOS, beams, seeds, streaming, argument checks."""
from types import SimpleNamespace

import pytest
import torch

from course_utils import LlamaModel
from course_utils.beam_search import beam_search
from course_utils.decoding_io import NO_EOS
from course_utils.generation import generate
from course_utils.sampling import SamplingConfig, repetition_penalty
from course_utils.streaming import text_streamer

PROMPTS = [[5, 17, 42, 8, 9], [11, 3], [60, 61, 62]]


@pytest.fixture
def tiny_model(tiny_config):
    """A random tiny model with an untied, small output head: varied, non-degenerate next-token distributions
    (with tied random embeddings it would almost surely repeat the last token forever)."""
    torch.manual_seed(0)
    tiny_config.tie_embeddings = False
    model = LlamaModel(tiny_config).eval()
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 0.4)
    return model


@torch.no_grad()
def greedy_without_cache(model, prompt, steps, penalty=1.0):
    """Reference: recompute the whole sequence every step, take the argmax of the (penalised) last logits."""
    ids, logprobs = list(prompt), []
    for _ in range(steps):
        logits = model(torch.tensor([ids]))[0, -1]
        choice = repetition_penalty(logits, ids, penalty).argmax()
        logprobs.append(float(torch.log_softmax(logits, -1)[choice]))
        ids.append(int(choice))
    return ids[len(prompt):], logprobs


def test_cached_batched_greedy_equals_uncached_loop(tiny_model):
    result = generate(tiny_model, PROMPTS, max_new_tokens=12, eos_id=NO_EOS)
    for prompt, tokens, logprobs in zip(PROMPTS, result.tokens, result.logprobs):
        expected_tokens, expected_logprobs = greedy_without_cache(tiny_model, prompt, 12)
        assert tokens == expected_tokens
        assert logprobs == pytest.approx(expected_logprobs, abs=1e-4)
    assert result.finished == [False] * 3 and result.texts is None


def test_repetition_penalty_in_padded_batch_matches_reference(tiny_model):
    result = generate(tiny_model, PROMPTS, max_new_tokens=10, eos_id=NO_EOS,
                      sampling=SamplingConfig(temperature=0, repetition_penalty=1.8))
    for prompt, tokens in zip(PROMPTS, result.tokens):
        assert tokens == greedy_without_cache(tiny_model, prompt, 10, penalty=1.8)[0]


def test_rows_stop_at_their_own_eos(tiny_model):
    free = generate(tiny_model, PROMPTS[:2], max_new_tokens=15, eos_id=NO_EOS).tokens
    first = [{t: row.index(t) for t in reversed(row)} for row in free]  # token -> first position
    eos = next(t for t in first[0] if first[1].get(t, 99) != first[0][t] and first[0][t] < 14)
    result = generate(tiny_model, PROMPTS[:2], max_new_tokens=15, eos_id=eos)
    stops = [f.get(eos) for f in first]
    assert stops[0] != stops[1]
    for row, free_row, stop, done in zip(result.tokens, free, stops, result.finished):
        if stop is None:
            assert row == free_row and not done
        else:
            assert row == free_row[:stop + 1] and row[-1] == eos and done
    assert len(result.logprobs[0]) == len(result.tokens[0])


def test_beam_search_with_one_beam_is_greedy(tiny_model):
    greedy = generate(tiny_model, PROMPTS, max_new_tokens=10, eos_id=NO_EOS)
    beam = beam_search(tiny_model, PROMPTS, num_beams=1, max_new_tokens=10, eos_id=NO_EOS)
    assert beam.tokens == greedy.tokens
    assert beam.total_logprobs == pytest.approx(greedy.total_logprobs, abs=1e-4)


def test_beam_scores_are_the_chain_rule_of_the_returned_beam(tiny_model):
    result = generate(tiny_model, PROMPTS, max_new_tokens=8, num_beams=3, length_penalty=0.0, eos_id=NO_EOS)
    for prompt, tokens, score in zip(PROMPTS, result.tokens, result.scores):
        logits = tiny_model(torch.tensor([prompt + tokens]))[0, len(prompt) - 1:-1].detach()
        chain = torch.log_softmax(logits, -1).gather(1, torch.tensor(tokens)[:, None]).sum()
        assert score == pytest.approx(float(chain), abs=1e-3)
    greedy = generate(tiny_model, PROMPTS, max_new_tokens=8, eos_id=NO_EOS)
    assert sum(result.scores) >= sum(greedy.total_logprobs) - 1e-4


def test_same_seed_same_sample_and_stream_sees_every_step(tiny_model):
    config = SamplingConfig(top_p=0.95)
    a = generate(tiny_model, PROMPTS, max_new_tokens=10, sampling=config, seed=7, eos_id=NO_EOS)
    b = generate(tiny_model, PROMPTS, max_new_tokens=10, sampling=config, seed=7, eos_id=NO_EOS)
    c = generate(tiny_model, PROMPTS, max_new_tokens=10, sampling=config, seed=8, eos_id=NO_EOS)
    assert a.tokens == b.tokens and a.tokens != c.tokens
    seen = []
    generate(tiny_model, PROMPTS, max_new_tokens=10, sampling=config, seed=7, eos_id=NO_EOS, stream=seen.append)
    assert [list(step) for step in zip(*a.tokens)] == seen


class FakeTokenizer:
    eos_id = 2

    def encode(self, text):
        return [ord(c) % 90 + 5 for c in text]

    def decode(self, ids):
        return "".join(chr(65 + i % 26) for i in ids)


def test_string_prompts_and_text_streamer(tiny_model):
    tok = FakeTokenizer()
    pieces = []
    result = generate(tiny_model, ["hello", "a longer prompt"], max_new_tokens=6, tokenizer=tok, eos_id=NO_EOS,
                      stream=text_streamer(tok, row=1, write=pieces.append))
    letters = ["".join(chr(65 + i % 26) for i in row) for row in result.tokens]  # the fake tokenizer's definition
    assert result.texts == letters and all(len(text) == 6 for text in letters)
    assert "".join(pieces) == letters[1] and len(pieces) == 6


def test_texts_and_stream_leave_out_the_end_of_sequence_token(tiny_model):
    tok = FakeTokenizer()
    free = generate(tiny_model, [[5, 17, 42]], max_new_tokens=6, eos_id=NO_EOS)
    eos = free.tokens[0][3]  # declare the 4th greedy token the end of sequence: greedy stops there
    tok.eos_id = eos
    pieces = []
    result = generate(tiny_model, [[5, 17, 42]], max_new_tokens=6, tokenizer=tok, eos_id=eos,
                      stream=text_streamer(tok, write=pieces.append))
    first_stop = free.tokens[0].index(eos)
    expected = "".join(chr(65 + i % 26) for i in free.tokens[0][:first_stop])
    assert result.finished == [True] and result.texts == [expected] and "".join(pieces) == expected


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompts=["text"]), "tokenizer"), (dict(prompts=[]), "at least one prompt"),
    (dict(prompts=[[]]), "at least one"),
    (dict(max_new_tokens=0), ">= 1"), (dict(num_beams=0), ">= 1"), (dict(seed=-1), ">= 0"),
    (dict(eos_id=500), r"in \[-1, 96\].*never stop"),
    (dict(num_beams=2, sampling=SamplingConfig()), "num_beams=1"),
    (dict(num_beams=2, length_penalty=float("nan")), "finite"), (dict(max_new_tokens=200), "context length"),
])
def test_invalid_arguments_raise(tiny_model, kwargs, message):
    kwargs = {"prompts": PROMPTS, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(tiny_model, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(sampling="greedy"), "SamplingConfig"), (dict(max_new_tokens=2.5), r"integer >= 1.*got 2\.5"),
    (dict(prompts=[[5, 504.9]]), r"prompts\[0\]\[1\] must be one of integer token ids in \[0, 96\].*504\.9"),
    (dict(prompts="hello"), "list of strings or of token-id lists"), (dict(seed=1.0), "integer >= 0"),
])
def test_wrong_types_raise_type_error(tiny_model, kwargs, message):
    kwargs = {"prompts": PROMPTS, **kwargs}
    with pytest.raises(TypeError, match=message):
        generate(tiny_model, **kwargs)


class _Cache:
    def reorder(self, index: torch.Tensor) -> None:
        pass


class StubModel:
    """A model whose next-token logits always favour token 3; call number ``poison_call`` gets ``poison_row`` set
    to ``poison_values`` (a scalar or a full row) in prompt row ``row``."""

    def __init__(self, vocab: int = 10, poison_call: int = 0, row: int = 0, poison_values=None):
        self.config = SimpleNamespace(vocab_size=vocab, eos_id=2, max_seq_len=64)
        self.device = torch.device("cpu")
        self.calls, self.poison_call, self.row, self.poison_values = 0, poison_call, row, poison_values

    def new_cache(self, batch: int, total: int) -> _Cache:
        return _Cache()

    def __call__(self, ids, cache=None, attention_mask=None, last_only=False) -> torch.Tensor:
        self.calls += 1
        logits = torch.zeros(ids.shape[0], ids.shape[1], self.config.vocab_size, device=self.device)
        logits[..., 3] = 5.0
        if self.calls == self.poison_call:
            logits[self.row, -1] = self.poison_values
        return logits


NAN, NEG_INF = float("nan"), float("-inf")


@pytest.mark.parametrize("values", [NAN, NEG_INF, torch.tensor([NAN] + [0.0] * 9), float("inf")])
@pytest.mark.parametrize("settings", [dict(), dict(sampling=SamplingConfig(top_p=0.9)), dict(eos_id=NO_EOS),
                                      dict(stream=lambda ids: None), dict(num_beams=2),
                                      dict(sampling=SamplingConfig(temperature=0, repetition_penalty=1.3))])
def test_non_finite_logits_are_refused_not_decoded(values, settings):
    row = 2 if "num_beams" in settings else 1  # beam search runs num_beams model rows per prompt: row 2 = prompt 1
    model = StubModel(poison_call=3, row=row, poison_values=values)
    with pytest.raises(ValueError, match=r"row\(s\) \[1\] hold NaN/\+inf or no finite value|prompt\(s\) \[1\]"):
        generate(model, [[1, 4], [5, 6, 7]], max_new_tokens=6, seed=0, **settings)


def test_finite_logits_decode_as_before_with_the_stub():
    result = generate(StubModel(), [[1, 4], [5, 6, 7]], max_new_tokens=5)
    assert result.tokens == [[3] * 5, [3] * 5] and result.finished == [False, False]


def _count_host_reads(monkeypatch) -> list[int]:
    """Patch every Tensor method that copies a value to the host; returns a one-element call counter."""
    count = [0]
    for method in ("tolist", "item", "__bool__", "__int__", "__float__", "__index__"):
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, **kwargs):
            count[0] += 1
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, method, counted)
    return count


@pytest.mark.parametrize("settings, per_step", [(dict(), 1), (dict(eos_id=NO_EOS), 0),
                                                (dict(sampling=SamplingConfig(top_k=3, repetition_penalty=1.2)), 1),
                                                (dict(stream=lambda ids: None), 1), (dict(num_beams=2), 1)])
def test_host_reads_per_decoding_step_do_not_grow(monkeypatch, settings, per_step):
    """The loop reads the device once per step (end-of-sequence flags, with the non-finite flags folded in)."""
    count = _count_host_reads(monkeypatch)
    reads = []
    for steps in (4, 12):
        count[0] = 0
        generate(StubModel(), [[1, 4], [5, 6, 7]], max_new_tokens=steps, seed=0, **settings)
        reads.append(count[0])
    assert (reads[1] - reads[0]) == per_step * 8, reads


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host synchronisations are a CUDA matter")
@pytest.mark.parametrize("settings", [dict(), dict(sampling=SamplingConfig(top_p=0.9, repetition_penalty=1.2))])
def test_cuda_synchronisations_per_step_stay_at_one(settings):
    """On CUDA, torch's sync debug mode warns on every device-to-host wait: at most one per decoding step."""
    import warnings

    counts = []
    for steps in (4, 12):
        model = StubModel()
        model.device = torch.device("cuda")  # the stub's logits are made on the GPU: no copies per step
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                generate(model, [[1, 4], [5, 6, 7]], max_new_tokens=steps, seed=0, **settings)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(w.message) for w in caught))
    assert counts[1] - counts[0] <= 8, counts
