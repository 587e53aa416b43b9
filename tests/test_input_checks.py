"""Nothing silently wrong: inputs and settings that would give wrong results are refused
with a message that names them (regression tests of issue 13's findings)."""

import numpy as np
import pytest

from conftest import TINY
from pneumonia_cnn import PneumoniaCNN


def test_one_image_with_a_channel_axis_is_not_read_as_many(fitted_tiny):
    one = np.full((32, 32, 1), 100, np.uint8)
    with pytest.raises(ValueError, match=r"one image of 32x32 pixels.*or 32 images.*"
                                         r"X\[np.newaxis\]"):
        fitted_tiny.predict_proba(one)
    assert fitted_tiny.predict_proba(one[np.newaxis]).shape == (1, 2)
    with pytest.raises(ValueError, match="shape"):
        PneumoniaCNN(**TINY).fit(np.zeros((32, 32, 3), np.uint8), ["NORMAL", "PNEUMONIA"] * 16)
