"""Accuracy, size, parameter count and the latency helper."""

import pytest
import torch

import qhelpers as qh


def test_accuracy_counts_correct_predictions():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(x[:, 0].long(), 3).float()

    loader = [(torch.tensor([[0.0], [1.0], [2.0], [2.0]]), torch.tensor([0, 1, 2, 0]))]
    assert qh.accuracy(Fixed().eval(), loader) == 75.0


def test_accuracy_refuses_training_mode_and_empty_loader():
    with pytest.raises(ValueError, match="training mode"):
        qh.accuracy(torch.nn.Linear(2, 2).train(), [])
    with pytest.raises(ValueError, match="no batches"):
        qh.accuracy(torch.nn.Linear(2, 2).eval(), [])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        qh.accuracy("model", [])


def test_size_and_parameters_of_a_linear_layer():
    lin = torch.nn.Linear(100, 10)
    assert qh.count_parameters(lin) == 1010
    size = qh.model_size_bytes(lin)
    assert 1010 * 4 <= size <= 1010 * 4 + 2000  # float32 payload plus the zip container


def test_latency_measurement_is_well_formed():
    lat = qh.measure_latency(torch.nn.Linear(8, 8), torch.randn(2, 8), threads=1, min_run_time=0.05)
    assert lat.median_ms > 0 and lat.iqr_ms >= 0 and lat.runs >= 1 and lat.threads == 1
    assert "ms median" in str(lat)
    assert set(lat.as_dict()) == {"median_ms", "iqr_ms", "runs", "threads", "label"}


@pytest.mark.parametrize("kwargs, error", [(dict(threads=0), ValueError), (dict(min_run_time=0), ValueError)])
def test_latency_bad_arguments(kwargs, error):
    with pytest.raises(error):
        qh.measure_latency(torch.nn.Linear(2, 2), torch.randn(1, 2), **kwargs)
    with pytest.raises(TypeError):
        qh.measure_latency(42, torch.randn(1, 2))
