"""The base helpers that were one module: device choice, dtype policy, seeding, thread control, process memory."""
import pytest
import torch

from course_utils import pick_device, seed_everything
from course_utils.precision import default_dtype
from course_utils.process_memory import peak_rss_mib, tensor_mib
from course_utils.threads import single_thread


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


def test_single_thread_restores_the_thread_count():
    before = torch.get_num_threads()
    with single_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="inside"), single_thread():
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before  # restored after an error too


def test_process_memory_in_mib():
    assert tensor_mib(torch.zeros(2**18), torch.zeros(2**17, dtype=torch.float64)) == pytest.approx(2.0)
    assert tensor_mib() == 0
    big = torch.ones(2**22)  # 16 MiB the process has touched
    assert peak_rss_mib() >= tensor_mib(big)
    with pytest.raises(TypeError, match=r"tensors\[1\] must be a torch.Tensor, got list"):
        tensor_mib(big, [1.0])
