"""Device choice and seeding."""
import pytest
import torch

from course_utils import pick_device, seed_everything
from course_utils.device import default_dtype


def test_cpu_and_auto(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    assert pick_device("auto").type in ({expected} if expected else {"cpu", "mps"})


def test_env_overrides_auto(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda0", "tpu", ""])
def test_unknown_device_names_raise(name):
    with pytest.raises(ValueError, match="allowed"):
        pick_device(name) if name else pick_device(" ")


def test_torch_device_objects_are_accepted():
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(TypeError, match=r"device must be a string or a torch.device .*got int"):
        pick_device(0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_gpu_raises():
    with pytest.raises(ValueError, match="no CUDA"):
        pick_device("cuda")


def test_dtype_policy():
    assert default_dtype(torch.device("cpu")) == torch.float32
    assert default_dtype(torch.device("cuda")) == torch.bfloat16


def test_seed_everything_is_reproducible():
    first = torch.rand(3, generator=seed_everything(7))
    assert torch.equal(first, torch.rand(3, generator=seed_everything(7)))
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        seed_everything(-1)
