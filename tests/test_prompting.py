"""Tests of the prompting modules: task files, prompt builders, answer extraction, option scoring, evaluation."""
from __future__ import annotations

import json

import pytest
import torch

from course_utils.answers import (
    canonical_number,
    extract_answer,
    extract_number,
    extract_option,
    extract_pattern,
    is_correct,
)
from course_utils.evaluation import accuracy_interval, evaluate
from course_utils.option_scoring import score_options
from course_utils.plots.prompting import strategy_task_figure
from course_utils.prompt_tasks import Item, Task, load_task, load_tasks
from course_utils.prompts import STRATEGIES, ZERO_SHOT_COT_TRIGGER, build_prompt, select_examples

HEADER = {"task": "toy", "instruction": "Name the colour.", "answer_format": "Answer with one word.",
          "expert": "You are a painter.", "answer_type": "option", "options": ["red", "blue"]}


def toy_task(n_examples: int = 4) -> Task:
    examples = tuple(Item(f"example {i}?", "red" if i % 2 else "blue", f"step {i}.") for i in range(n_examples))
    return Task(name="toy", instruction="Name the colour.", answer_format="Answer with one word.",
                expert="You are a painter.", answer_type="option", examples=examples,
                items=(Item("sky?", "blue"),), options=("red", "blue"))


def write_jsonl(path, records) -> None:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")


# ------------------------------------------------------------------------------------------------ task files
def test_course_tasks_have_enough_items():
    tasks = load_tasks()
    assert len(tasks) >= 3
    for task in tasks.values():
        assert len(task.items) >= 40, task.name
        assert len(task.examples) >= 5 and all(e.reasoning for e in task.examples), task.name
        questions = [i.question for i in task.items + task.examples]
        assert len(set(questions)) == len(questions), f"{task.name}: duplicated questions"


def test_course_task_answers_are_readable_by_their_own_extractor():
    for task in load_tasks().values():
        for item in task.items:
            assert is_correct(task, extract_answer(task, f"The answer is {item.answer}."), item), item


def test_load_task_round_trip(tmp_path):
    path = tmp_path / "toy.jsonl"
    write_jsonl(path, [HEADER, {"split": "example", "question": "grass?", "answer": "red", "reasoning": "r."},
                       "", {"split": "test", "question": "sea?", "answer": "blue"}])
    task = load_task(path)
    assert task.options == ("red", "blue") and task.examples[0].reasoning == "r."
    assert task.items == (Item("sea?", "blue"),)


def test_empty_task_file_is_refused(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n")
    with pytest.raises(ValueError, match=r"empty\.jsonl: the task file is empty"):
        load_task(path)


def test_malformed_line_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    write_jsonl(path, [HEADER, {"split": "test", "question": "sea?", "answer": "blue"}, '{"split": "test", "quest'])
    with pytest.raises(ValueError, match=r"broken\.jsonl, line 3: not valid JSON"):
        load_task(path)


@pytest.mark.parametrize("bad_item, message", [
    ({"split": "train", "question": "q", "answer": "red"}, "split must be"),
    ({"split": "test", "question": "q", "answer": "green"}, "not one of"),
    ({"split": "example", "question": "q", "answer": "red"}, "'reasoning' must be"),
    ([1, 2], "expected a JSON object"),
])
def test_bad_items_are_refused_with_line_number(tmp_path, bad_item, message):
    path = tmp_path / "toy.jsonl"
    write_jsonl(path, [HEADER, bad_item])
    with pytest.raises(ValueError, match=rf"line 2: .*{message}"):
        load_task(path)


def test_bad_header_is_refused(tmp_path):
    path = tmp_path / "toy.jsonl"
    write_jsonl(path, [{**HEADER, "answer_type": "essay"}, {"split": "test", "question": "q", "answer": "x"}])
    with pytest.raises(ValueError, match="line 1: answer_type must be one of"):
        load_task(path)


def test_task_without_test_items_is_refused(tmp_path):
    path = tmp_path / "toy.jsonl"
    write_jsonl(path, [HEADER, {"split": "example", "question": "q", "answer": "red", "reasoning": "r."}])
    with pytest.raises(ValueError, match="no test items"):
        load_task(path)


# --------------------------------------------------------------------------------------------------- builders
def test_select_examples_is_seeded_and_orders_by_seed():
    pool = toy_task(6).examples
    first = select_examples(pool, 3, seed=1)
    assert first == select_examples(pool, 3, seed=1)
    assert len(set(first)) == 3
    orders = {tuple(e.question for e in select_examples(pool, 6, seed)) for seed in range(10)}
    assert len(orders) > 1  # the full pool comes back in different orders


def test_k_larger_than_pool_is_refused():
    with pytest.raises(ValueError, match=r"k must be an integer in \[0, 4\]"):
        select_examples(toy_task(4).examples, 5, seed=0)
    with pytest.raises(ValueError, match="k must be"):
        build_prompt(toy_task(4), "few-shot", "sky?", k=9)


def test_bad_strategy_and_question_are_refused():
    with pytest.raises(ValueError, match="strategy must be one of"):
        build_prompt(toy_task(), "tree-of-thought", "sky?")
    with pytest.raises(ValueError, match="question must be"):
        build_prompt(toy_task(), "zero-shot", "  ")


SYSTEM_DEFAULT = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def test_exact_rendered_prompts(course_model):
    _, tok = course_model
    task = toy_task(4)
    user = "<|im_start|>user\nName the colour. Answer with one word.\n\nsky?<|im_end|>\n"
    assistant = "<|im_start|>assistant\n"
    assert build_prompt(task, "zero-shot", "sky?").render(tok) == SYSTEM_DEFAULT + user + assistant
    assert build_prompt(task, "expert", "sky?").render(tok) == (
        "<|im_start|>system\nYou are a painter.<|im_end|>\n" + user + assistant)
    # seed 0 picks examples 3 and 1 of the pool, in that order (random.Random(0).sample)
    shot = ("<|im_start|>user\nName the colour. Answer with one word.\n\nexample {i}?<|im_end|>\n"
            "<|im_start|>assistant\n{answer}<|im_end|>\n")
    assert build_prompt(task, "few-shot", "sky?", k=2, seed=0).render(tok) == (
        SYSTEM_DEFAULT + shot.format(i=3, answer="red") + shot.format(i=1, answer="red") + user + assistant)
    cot_user = "<|im_start|>user\nName the colour.\n\nsky?<|im_end|>\n"
    assert build_prompt(task, "few-shot-cot", "sky?", k=1, seed=0).render(tok) == (
        SYSTEM_DEFAULT + "<|im_start|>user\nName the colour.\n\nexample 3?<|im_end|>\n"
        "<|im_start|>assistant\nstep 3. The answer is red.<|im_end|>\n" + cot_user + assistant)
    zero_cot = build_prompt(task, "zero-shot-cot", "sky?")
    assert zero_cot.render(tok) == SYSTEM_DEFAULT + cot_user + assistant + "Let's think step by step."
    assert zero_cot.token_ids(tok)[-len(tok.encode(ZERO_SHOT_COT_TRIGGER)):] == tok.encode(ZERO_SHOT_COT_TRIGGER)


def test_instruction_override_replaces_the_wording():
    prompt = build_prompt(toy_task(), "few-shot", "sky?", k=2, seed=3, instruction="Colour?")
    users = [m["content"] for m in prompt.messages if m["role"] == "user"]
    assert len(users) == 3 and all(u.startswith("Colour?\n\n") for u in users)


def test_every_strategy_builds_for_the_course_tasks():
    for task in load_tasks().values():
        for strategy in STRATEGIES:
            prompt = build_prompt(task, strategy, task.items[0].question, k=3, seed=5)
            assert prompt.messages[-1]["content"].endswith(task.items[0].question)


# ------------------------------------------------------------------------------------------- answer extraction
@pytest.mark.parametrize("text, expected", [
    ("42", "42"),
    ("There are 42 apples.", "42"),                                  # trailing text
    ("5 + 3 = 8, then 8 - 2 = 6 apples left", "6"),                  # several numbers: the last one
    ("The answer is 6. Check: 6 + 2 = 8.", "6"),                     # "answer is" wins over the last number
    ("It was 3; the answer is: 1,200 dollars (not 12)", "1200"),     # thousands separator, text after it
    ("answer is 7. Later the ANSWER IS 9", "9"),                     # the last marker counts
    ("The answer is -4.50", "-4.5"),
    ("I do not know.", None),                                        # no number
    ("The answer is unclear, maybe 5", "5"),
    ("", None),
])
def test_extract_number(text, expected):
    assert extract_number(text) == expected


def test_canonical_number():
    assert [canonical_number(t) for t in ("6.0", "1,000", "-0", "0.250", "12")] == ["6", "1000", "0", "0.25", "12"]


@pytest.mark.parametrize("text, expected", [
    ("sport", "sport"),
    ("Sports: Sports\nBusiness: Business", "sport"),                 # the first option named
    ("This is about science, not business.", "science"),
    ("It mentions sport. The answer is business.", "business"),      # the part after "answer is"
    ("A cooking headline.", None),                                   # nothing named
    ("transport news", None),                                        # only at a word start
])
def test_extract_option(text, expected):
    assert extract_option(text, ("sport", "science", "business", "food")) == expected


def test_extract_pattern_and_dispatch():
    pattern = r"\d{4}-\d{2}-\d{2}"
    assert extract_pattern("It is 2021-03-05, I think", pattern) == "2021-03-05"
    assert extract_pattern("March 5, 2021", pattern) is None
    assert extract_pattern("2020-01-01 ... The answer is 2021-03-05.", pattern) == "2021-03-05"
    with pytest.raises(ValueError, match="options must be"):
        extract_option("red", ())
    with pytest.raises(TypeError, match="text must be a string, got NoneType"):
        extract_number(None)


def test_is_correct():
    task = toy_task()
    assert is_correct(task, "Blue", Item("sky?", "blue"))
    assert not is_correct(task, None, Item("sky?", "blue"))


# ---------------------------------------------------------------------------------------------- option scoring
def log_likelihood_by_hand(model, prompt: list[int], option: list[int]) -> float:
    """Run prompt + option in one pass and add log p(option token | everything before it)."""
    ids = torch.tensor([prompt + option])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids), dim=-1)[0]
    return sum(float(logp[len(prompt) - 1 + j, token]) for j, token in enumerate(option))


def test_score_options_equals_summed_token_logprobs(tiny_model):
    prompt = [5, 17, 3, 88, 41]
    options = [[7], [12, 30, 2], [60, 60], [1, 2, 3, 4, 5]]
    scores = score_options(tiny_model, prompt, options)
    expected = torch.tensor([log_likelihood_by_hand(tiny_model, prompt, o) for o in options])
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)
    normalised = score_options(tiny_model, prompt, options, length_normalize=True)
    torch.testing.assert_close(normalised, expected / torch.tensor([1.0, 3, 2, 5]), atol=1e-4, rtol=0)


def test_score_options_on_the_course_model(course_model):
    model, tok = course_model
    prompt = build_prompt(toy_task(), "zero-shot", "What colour is a clear daytime sky?").token_ids(tok)
    options = [tok.encode(word) for word in ("blue", "red", "Blue sky")]
    scores = score_options(model, prompt, options)
    expected = torch.tensor([log_likelihood_by_hand(model, prompt, o) for o in options])
    torch.testing.assert_close(scores, expected, atol=2e-3, rtol=0)
    assert scores[0] > scores[1]


def test_score_options_refuses_empty_input(tiny_model):
    with pytest.raises(ValueError, match="prompt_ids"):
        score_options(tiny_model, [], [[1]])
    with pytest.raises(ValueError, match="options_ids"):
        score_options(tiny_model, [1, 2], [[1], []])


# -------------------------------------------------------------------------------------------------- evaluation
def test_evaluate_scores_the_extracted_answers(course_model):
    model, tok = course_model
    task = load_tasks()["dates"]
    items = list(task.items[:3])
    result = evaluate(model, tok, task, "few-shot", items, k=3, seed=0, max_new_tokens=12, batch_size=2)
    assert len(result.outputs) == len(result.predictions) == len(result.correct) == 3
    assert result.correct == [is_correct(task, extract_answer(task, o), i) for o, i in zip(result.outputs, items)]
    assert result.accuracy == sum(result.correct) / 3
    assert 1 <= result.mean_tokens <= 12 and result.seconds > 0
    assert result.cut_off == 1 - sum(result.finished) / 3
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(model, tok, task, "few-shot", items, batch_size=0)


def test_default_tasks_are_the_course_data():
    assert set(load_tasks()) == {"arithmetic", "dates", "topic"}


# ---- accuracy intervals ------------------------------------------------------------------------------------------

def test_wilson_interval_known_values():
    low, high = accuracy_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = accuracy_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    low, high = accuracy_interval(40, 40)
    assert high == 1.0 and low == pytest.approx(0.9124, abs=1e-4)
    assert accuracy_interval(20, 40)[1] - accuracy_interval(20, 40)[0] < high - accuracy_interval(5, 10)[0]


@pytest.mark.parametrize("hits, n, error, message", [
    (3, 0, ValueError, r"n must be an integer >= 1, got 0"),
    (-1, 5, ValueError, r"hits must be an integer in \[0, 5\]"),
    (6, 5, ValueError, r"hits must be an integer in \[0, 5\], got 6"), (True, 5, TypeError, "hits must .*got True"),
    (2.0, 5, TypeError, r"hits must be an integer in \[0, 5\], got 2\.0")])
def test_wilson_interval_rejects_bad_counts(hits, n, error, message):
    with pytest.raises(error, match=message):
        accuracy_interval(hits, n)


def test_strategy_figure_draws_error_bars_from_intervals():
    rows = [{"task": t, "strategy": s, "accuracy": 0.5, "low": 0.3, "high": 0.7, "mean_tokens": 4.0}
            for t in ("a", "b") for s in ("zero-shot", "few-shot")]
    fig = strategy_task_figure(rows)
    left = fig.axes[0]
    assert "95 % interval" in left.get_title()
    segments = [seg for collection in left.collections for seg in collection.get_segments()]
    assert len(segments) == 4 and all(seg[:, 1].tolist() == [30.0, 70.0] for seg in segments)
    plain = strategy_task_figure([{k: v for k, v in r.items() if k not in ("low", "high")} for r in rows])
    assert not plain.axes[0].collections and "interval" not in plain.axes[0].get_title()


# ------------------------------------------------- answer lines, early stop, voting, calibration (issue 14)
def test_answer_line_complete_needs_marker_answer_and_sentence_end():
    from course_utils.answers import answer_line_complete

    arithmetic, dates = load_tasks()["arithmetic"], load_tasks()["dates"]
    assert answer_line_complete(arithmetic, "8 - 2 = 6. The answer is 6. ")
    assert answer_line_complete(arithmetic, "So the answer is: 1,250\n")
    assert not answer_line_complete(arithmetic, "8 - 2 = 6. The answer is 6")      # the number may go on (62)
    assert not answer_line_complete(arithmetic, "8 - 2 = 6. The answer is 2.")     # 2.5 is still possible
    assert not answer_line_complete(arithmetic, "He has 5 + 3 = 8. Then ")          # no answer line yet
    assert not answer_line_complete(arithmetic, "The answer is not clear. ")        # a line without a number
    assert answer_line_complete(dates, "The answer is 1999-05-03. ")
    assert not answer_line_complete(dates, "The answer is 1999-05. ")
    with pytest.raises(TypeError, match="text"):
        answer_line_complete(dates, None)


def test_stream_callback_can_end_rows_early(tiny_model):
    from course_utils.generation import generate

    prompts = [[1, 2, 3], [4, 5]]
    free = generate(tiny_model, prompts, max_new_tokens=8, eos_id=96)
    steps = []

    def stop_row0_after_two(tokens):
        steps.append(tokens)
        return [0] if len(steps) == 2 else None

    stopped = generate(tiny_model, prompts, max_new_tokens=8, eos_id=96, stream=stop_row0_after_two)
    assert stopped.tokens[0][:2] == free.tokens[0][:2] and stopped.tokens[0][2:] == [96] and stopped.finished[0]
    assert stopped.tokens[1] == free.tokens[1]  # the other row is untouched
    assert all(step[0] is None for step in steps[2:])


def test_majority_vote_and_confusion_matrix():
    from course_utils.evaluation import confusion_matrix, majority_vote

    assert majority_vote(["6", None, "7", "6"]) == "6" and majority_vote(["7", "6"]) == "7"
    assert majority_vote([None, None]) is None
    counts = confusion_matrix(["a", "a", "b"], ["a", "b", None], ("a", "b"))
    assert counts.tolist() == [[1, 1, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match="gold label"):
        confusion_matrix(["c"], ["a"], ("a", "b"))


def test_calibration_removes_the_prompts_own_preference():
    from course_utils.option_scoring import calibrate_scores

    prior = torch.tensor([[0.7, 0.2, 0.1]]).log()  # the content-free input: the prompt favours option 0
    scores = torch.tensor([[0.5, 0.4, 0.1], [0.6, 0.1, 0.3]]).log()
    calibrated = calibrate_scores(scores, prior)
    assert scores.argmax(1).tolist() == [0, 0]
    assert calibrated.argmax(1).tolist() == [1, 2]  # option 0 only wins where the question raises it above 0.7
    # a uniform prior changes nothing; renormalisation makes the scale of the log-scores irrelevant
    assert torch.equal(calibrate_scores(scores, torch.zeros(1, 3)).argmax(1), scores.argmax(1))
    assert torch.allclose(calibrate_scores(scores - 5, prior), calibrated, atol=1e-6)
    with pytest.raises(ValueError, match="options axis"):
        calibrate_scores(scores, torch.zeros(1, 2))


def test_self_consistency_votes_over_sampled_replies(course_model):
    from course_utils.evaluation import self_consistency
    from course_utils.sampling import SamplingConfig

    model, tok = course_model
    task = load_tasks()["arithmetic"]
    items = list(task.items[:2])
    result = self_consistency(model, tok, task, items, 3, SamplingConfig(temperature=0.7), max_new_tokens=24,
                              batch_size=6)
    assert len(result.votes) == 2 and all(len(v) == 3 for v in result.votes)
    assert result.correct == [is_correct(task, m, i) for m, i in zip(result.majority, items)]
    assert 0 <= result.finished <= 1 and result.interval[0] <= result.accuracy <= result.interval[1]
    with pytest.raises(ValueError, match="SamplingConfig"):
        self_consistency(model, tok, task, items, 3, None)


def test_new_figures_draw_and_validate():
    import matplotlib.pyplot as plt

    from course_utils.plots.prompting import confusion_figure, k_sweep_figure, spread_figure
    from course_utils.plots.ranks import rank_mass_figure

    rows = [{"task": "t", "strategy": s, "accuracy": 0.5, "mean_tokens": n} for s, n in (("a", 3), ("b", 40))]
    fig = strategy_task_figure(rows, caps={"direct": 12, "chain-of-thought": 128})
    assert len(fig.axes[1].lines) == 2 and fig.legends  # cap lines on the length panel, legend below
    fig = confusion_figure([[3, 1, 0], [0, 4, 1]], ["x", "y"], "demo")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["x", "y", "none"]
    fig = k_sweep_figure([0, 1, 2], {"dates": [(0.0, 0.0, 0.1), (0.5, 0.3, 0.7), (0.6, 0.4, 0.8)]}, "k")
    assert len(fig.axes[0].lines) == 1
    fig = spread_figure({"a": [0.5, 0.6]}, "spread", chance=0.25)
    assert "range" in " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    probs = torch.softmax(torch.randn(100, generator=torch.Generator().manual_seed(0)), -1)
    fig = rank_mass_figure({"T = 1": probs, "T = 2": torch.softmax(probs.log() / 2, -1)}, top=10)
    heights = [bar.get_height() for bar in fig.axes[1].patches]
    assert abs(heights[0] + heights[2] - 100) < 1e-3  # top 10 + all other tokens = the whole mass
    plt.close("all")
    with pytest.raises(ValueError, match="counts"):
        confusion_figure([[1, 2]], ["x", "y"], "bad")
    with pytest.raises(ValueError, match="one .accuracy, low, high. triple"):
        k_sweep_figure([0, 1], {"d": [(0.1, 0, 0.2)]}, "bad")
    with pytest.raises(ValueError, match="top"):
        rank_mass_figure({"x": probs}, top=0)
