"""Writes tiny.safetensors with PyTorch's safetensors writer (torch 2.13 CPU, safetensors
from PyPI). SafeTensorsTests reads it and checks every value below; torch is not needed
to run the tests."""
import torch
from safetensors.torch import save_file

t = {
    "features.0.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4 - 0.5,
    "half": torch.tensor([1.5, -2.25, 65504.0], dtype=torch.float16),
    "bhalf": torch.tensor([1.0, -3.0, 1e30], dtype=torch.bfloat16),
    "labels": torch.tensor([[0, 9], [3, -1]], dtype=torch.int64),
    "mask": torch.tensor([True, False, True]),
    "scalar": torch.tensor(3.25, dtype=torch.float64),
}
save_file(t, "tiny.safetensors", metadata={"producer": "torch"})
