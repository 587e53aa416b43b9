"""Acquisition batches read from Kaggle file names (a real-shift validation)."""

import numpy as np
import pytest

from pneumonia_cnn.data import batch_masks, file_families


def _names():
    names = [f"person{i}_bacteria_{2 * i}.jpeg" for i in range(1, 101)]
    names += [f"IM-{100 + i:04d}-0001.jpeg" for i in range(50)]
    names += [f"NORMAL2-IM-{400 + i:04d}-0001.jpeg" for i in range(50)]
    return names


def test_families_and_numbers_are_read_from_kaggle_names():
    fams, nums = file_families(["a/person12_virus_40.jpeg", "IM-0115-0001.jpeg",
                                "NORMAL2-IM-0383-0001-0002.jpeg"])
    assert fams.tolist() == ["PNEUMONIA", "IM", "NORMAL2"]
    assert nums.tolist() == [12, 115, 383]


def test_early_and_late_batches_take_each_family_s_ends():
    names = _names()
    early, late = batch_masks(names, share=0.2)
    assert not (early & late).any()
    fams, nums = file_families(names)
    for fam in ("PNEUMONIA", "IM", "NORMAL2"):
        m = fams == fam
        assert 0.15 <= early[m].mean() <= 0.25 and 0.15 <= late[m].mean() <= 0.25
        assert nums[m & early].max() < nums[m & ~early & ~late].min()
        assert nums[m & late].min() > nums[m & ~early & ~late].max()
    # a patient's films share a number: never on both sides
    both = np.array(["person7_bacteria_1.jpeg", "person7_virus_2.jpeg"] + names)
    early, late = batch_masks(both)
    assert early[0] == early[1] and late[0] == late[1]


def test_other_names_are_refused_by_name():
    with pytest.raises(ValueError, match="scan_001.png: not a Kaggle chest X-ray file name"):
        batch_masks(["person1_virus_1.jpeg", "scan_001.png"])
    with pytest.raises(ValueError, match="share must be in"):
        batch_masks(_names(), share=0.6)
