"""Chat data, the training loop and exact match: answer-only labels, masked loss, a run that lowers the loss, memory."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_utils.chat_data import IGNORE_INDEX, collate, encode_example
from course_utils.lora import add_lora
from course_utils.memory import SavedTensorMeter, measure_inference, measure_training_step
from course_utils.reply_scoring import exact_match
from course_utils.training import NonFiniteLossError, TrainConfig, masked_lm_loss, train


def test_encode_example_keeps_only_answer_tokens(course_model):
    _, tok = course_model
    ids, labels = encode_example(tok, "Convert the date to ISO 8601: the 3rd of March 2021", "2021-03-03",
                                 system="You convert dates.")
    answer = [(i, label) for i, label in zip(ids, labels) if label != IGNORE_INDEX]
    assert tok.decode([i for i, _ in answer]) == "2021-03-03<|im_end|>"
    assert all(i == label for i, label in answer) and ids[-1] == tok.eos_id
    question = "Convert the date to ISO 8601: the 3rd of March 2021"
    prompt = tok.apply_chat_template([{"role": "system", "content": "You convert dates."},
                                      {"role": "user", "content": question}])
    assert ids[:len(prompt)] == prompt and len(ids) == len(prompt) + len(answer)


@pytest.mark.parametrize("answer", ["2021-03-03<|im_end|>", "2021<|im_end|>-03-03", "<|im_end|>"])
def test_answer_holding_the_end_of_turn_token_is_refused(course_model, answer):
    _, tok = course_model
    with pytest.raises(ValueError, match=r"contains the end-of-turn token '<\|im_end\|>'.*cut its labels"):
        encode_example(tok, "Convert: the 3rd of March 2021", answer)


def test_collate_and_masked_loss():
    batch = [([5, 6, 7], [IGNORE_INDEX, 6, 7]), ([1, 2], [IGNORE_INDEX, 2])]
    ids, labels = collate(batch, pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [1, 2, 0]]
    assert labels.tolist() == [[IGNORE_INDEX, 6, 7], [IGNORE_INDEX, 2, IGNORE_INDEX]]
    logits = torch.randn(2, 3, 11, generator=torch.Generator().manual_seed(0))
    expected = F.cross_entropy(torch.stack([logits[0, 0], logits[0, 1], logits[1, 0]]), torch.tensor([6, 7, 2]))
    torch.testing.assert_close(masked_lm_loss(logits, labels), expected)
    with pytest.raises(ValueError, match="every label is ignored"):
        masked_lm_loss(logits, torch.full_like(labels, IGNORE_INDEX))
    with pytest.raises(ValueError, match="disagree"):
        masked_lm_loss(logits, labels[:, :2])


def _toy_examples(n, vocab, seed=0):
    """Sequences 'x y <sep>' whose answer is (x + y) mod 10 + 10: learnable by a tiny model."""
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        x, y = torch.randint(0, 10, (2,), generator=generator).tolist()
        ids = [x, y, 20, (x + y) % 10 + 10]
        examples.append((ids, [IGNORE_INDEX] * 3 + ids[3:]))
    return examples


def test_tiny_lora_run_lowers_the_loss(tiny_model):
    add_lora(tiny_model, targets=("q_proj", "v_proj", "up_proj", "down_proj"), r=4, alpha=8)
    frozen = tiny_model.embed_tokens.weight.detach().clone()
    history = train(tiny_model, _toy_examples(256, tiny_model.config.vocab_size), TrainConfig(steps=40, batch_size=32,
                    lr=1e-2, seed=0), pad_id=0, progress=False)
    assert len(history.losses) == 40
    assert sum(history.losses[-5:]) / 5 < 0.7 * sum(history.losses[:5]) / 5
    assert torch.equal(tiny_model.embed_tokens.weight, frozen)
    assert not tiny_model.training


def test_train_is_reproducible(tiny_config):
    from course_utils.model import LlamaModel
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = LlamaModel(tiny_config)
        add_lora(model, r=2, alpha=4)
        runs.append(train(model, _toy_examples(64, tiny_config.vocab_size), TrainConfig(steps=3, batch_size=8),
                          pad_id=0, progress=False).losses)
    assert runs[0] == runs[1]


def test_train_config_validation(tiny_model):
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got 0"):
        TrainConfig(steps=1, lr=0)
    with pytest.raises(TypeError, match=r"batch_size must be an integer >= 1, got 8\.0"):
        TrainConfig(steps=1, batch_size=8.0)
    with pytest.raises(ValueError, match=r"schedule must be one of 'constant', 'linear', got 'cosine'"):
        TrainConfig(steps=1, schedule="cosine")
    linear = TrainConfig(steps=4, schedule="linear")
    assert [linear.lr_factor(s) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    with pytest.raises(ValueError, match="no trainable parameters"):
        tiny_model.requires_grad_(False)
        train(tiny_model, _toy_examples(8, 97), TrainConfig(steps=1, batch_size=4), pad_id=0, progress=False)
    with pytest.raises(ValueError, match="at least batch_size=16"):
        train(tiny_model, _toy_examples(8, 97), TrainConfig(steps=1), pad_id=0, progress=False)


def test_non_finite_loss_stops_training_before_the_update(tiny_model):
    """A run that turns NaN at step 3 (simulated: a frozen norm weight overflows after step 2) stops there."""
    add_lora(tiny_model, targets=("q_proj", "v_proj", "up_proj", "down_proj"), r=4, alpha=8)
    trained = [p for p in tiny_model.parameters() if p.requires_grad]
    kept = []

    def evaluate(model):
        kept.append([p.detach().clone() for p in trained])
        if len(kept) == 2:
            with torch.no_grad():
                model.norm.weight.fill_(float("inf"))
        return {}
    with pytest.raises(NonFiniteLossError, match=r"training stopped at step 3 of 50: the loss is nan .*lr=0\.01"):
        train(tiny_model, _toy_examples(64, tiny_model.config.vocab_size),
              TrainConfig(steps=50, batch_size=8, lr=1e-2, eval_every=1), pad_id=0, evaluate=evaluate, progress=False)
    assert len(kept) == 2 and all(torch.equal(p, q) for p, q in zip(trained, kept[1]))  # step 3 never updated
    assert not tiny_model.training


def test_exact_match():
    assert exact_match(["2021-03-03", " 1999-01-01\n", "x"], ["2021-03-03", "1999-01-01", "y"]) == 2 / 3
    with pytest.raises(ValueError, match="equally many"):
        exact_match(["a"], [])


def test_saved_tensor_meter_counts_each_storage_once():
    weight = torch.randn(64, 64, requires_grad=True)
    x = torch.randn(8, 64)
    with SavedTensorMeter() as meter:
        hidden = x @ weight  # saves x (for the weight's gradient); not weight, since x needs no gradient
        _ = (hidden * hidden).sum()  # saves hidden (once, although used twice)
    assert meter.nbytes == (x.numel() + hidden.numel()) * 4
    x.requires_grad_(True)
    with SavedTensorMeter() as meter:
        _ = x @ weight  # now both operands are needed
    assert meter.nbytes == (x.numel() + weight.numel()) * 4
    with SavedTensorMeter(exclude={(str(weight.device), weight.untyped_storage().data_ptr())}) as meter:
        _ = x @ weight
    assert meter.nbytes == x.numel() * 4


def test_memory_report_full_vs_lora(tiny_config):
    from course_utils.model import LlamaModel
    ids = torch.randint(0, tiny_config.vocab_size, (4, 16), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    torch.manual_seed(0)
    model = LlamaModel(tiny_config)
    n_params = sum(p.numel() for p in model.parameters())
    inference = measure_inference(model, lambda: model(ids))
    assert inference.weights == n_params * 4 and inference.gradients == 0
    assert inference.activations == ids.numel() * tiny_config.vocab_size * 4  # the logits
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    full = measure_training_step(model, lambda: masked_lm_loss(model(ids), labels), optimizer)
    assert full.weights == n_params * 4 and full.gradients == n_params * 4 and full.optimizer == 2 * n_params * 4
    assert full.activations > inference.activations
    add_lora(model, r=2, alpha=4)
    lora_params = [p for p in model.parameters() if p.requires_grad]
    lora = measure_training_step(model, lambda: masked_lm_loss(model(ids), labels),
                                 torch.optim.AdamW(lora_params, lr=1e-3))
    n_lora = sum(p.numel() for p in lora_params)
    assert lora.gradients == n_lora * 4 and lora.optimizer == 2 * n_lora * 4
    assert lora.activations > 0.5 * full.activations  # LoRA still stores the big activations (F5)
