"""Figures of lessons 01-02: the bars and lines they promise, and clear errors for mismatched inputs."""
import matplotlib.pyplot as plt
import pytest

from course_utils.plots.generation import (
    candidates_per_step,
    kept_versus_temperature,
    kv_cache_steps,
    temperature_panels,
)


def test_temperature_panels_show_where_the_rest_of_the_mass_went():
    fig = temperature_panels(["a", "b"], {0.5: [0.6, 0.3], 2.0: [0.05, 0.04]})
    hot = fig.axes[1]
    heights = [bar.get_height() for bar in hot.patches]
    assert len(heights) == 3 and heights[-1] == pytest.approx(0.91)  # the "all other tokens" bar
    assert [t.get_text() for t in hot.get_xticklabels()][-1] == "(all other tokens)"
    plain = temperature_panels(["a", "b"], {1.0: [0.5, 0.2]}, rest=False)
    assert len(plain.axes[0].patches) == 2
    with pytest.raises(TypeError, match="rest"):
        temperature_panels(["a"], {1.0: [0.5]}, rest="yes")
    plt.close("all")


def test_kv_cache_steps_accepts_sampled_no_cache_steps():
    fig = kv_cache_steps([0.3, 0.5], [0.1, 0.1, 0.1, 0.1], [10, 21, 33, 46], [10, 11, 12, 13],
                         timed_steps_without=[1, 4])
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="equal length"):
        kv_cache_steps([0.3, 0.5, 0.7], [0.1, 0.1], [10, 21], [10, 11], timed_steps_without=[1, 2])
    plt.close("all")


def test_kept_versus_temperature_and_nucleus_axis():
    fig = kept_versus_temperature([0.5, 1.0], {"top-k": [40, 40]}, {"top-k": [3.0, 4.0]})
    assert fig.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="same"):
        kept_versus_temperature([0.5], {"top-k": [40]}, {"top-p": [3.0]})
    fig = candidates_per_step([1, 30, 400], ["a", "b", "c"], 0.9)
    assert "step" in fig.axes[0].get_xlabel()
    plt.close("all")
