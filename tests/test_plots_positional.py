"""Positional figures: side-by-side RoPE panels and a legend that hides no data point."""
import matplotlib
import pytest
import torch

from course_utils.plots.positional import length_generalisation_figure, rope_pair_panels

matplotlib.use("Agg")


def test_rope_pair_panels_draw_one_panel_per_setting():
    panels = {"m = 5, n = 2": (torch.tensor([1.0, 0.2]), torch.tensor([0.7, -0.6])),
              "m = 45, n = 42": (torch.tensor([-0.3, 1.0]), torch.tensor([0.9, 0.1]))}
    fig = rope_pair_panels(panels)
    assert [ax.get_title() for ax in fig.axes] == list(panels)
    with pytest.raises(ValueError, match="at least one"):
        rope_pair_panels({})
    with pytest.raises(ValueError, match="2-vectors"):
        rope_pair_panels({"bad": (torch.zeros(3), torch.zeros(2))})


def test_length_generalisation_legend_sits_outside_the_axes():
    fig = length_generalisation_figure([1, 2, 4], {"rope": [[1.0, 0.9, 0.5]], "none": [[0.3, 0.2, 0.2]]}, 16, 1 / 16)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend_box = ax.get_legend().get_window_extent()
    assert legend_box.x0 >= ax.get_window_extent().x1  # to the right of the plotting area
