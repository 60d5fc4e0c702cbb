"""The figures of `midicopilot eval` (host/quality.py), on hand-made parts whose answers are
counted by hand."""
from __future__ import annotations

import pytest

from midicopilot.host.quality import Note, Tally, band_chords, figures, piece_beats, tally

TPQ = 24


def test_band_chords_hold_every_pitch_class_sounding_during_each_beat() -> None:
    # C major triad for beat 0, then G (held into beat 2), then nothing on beat 3.
    band = [Note(0, 24, 60), Note(0, 24, 64), Note(0, 12, 67), Note(24, 60, 55)]
    chords = band_chords(band, TPQ, 4)
    c, e, g = 1 << 0, 1 << 4, 1 << 7
    assert chords == [c | e | g, g, g, 0]


def test_in_chord_random_and_silence() -> None:
    band = [Note(0, 48, 60), Note(0, 48, 64), Note(0, 48, 67)]  # C E G for two beats
    chords = band_chords(band, TPQ, 3)
    part = [Note(0, 12, 72),    # C: in the chord
            Note(12, 24, 74),   # D: not
            Note(24, 48, 79),   # G: in
            Note(48, 60, 61)]   # beat 2: the band is silent, not counted
    t = tally(part, chords, TPQ, 3)
    f = figures(t, TPQ)
    assert f.notes == 4
    assert f.in_chord == pytest.approx(2 / 3)
    assert f.random_in_chord == pytest.approx(3 / 12)  # three pitch classes of twelve
    assert f.notes_per_beat == pytest.approx(4 / 3)
    assert f.pitch_range == 79 - 61
    assert f.mean_length_beats == pytest.approx((12 + 12 + 24 + 12) / 4 / TPQ)


def test_on_grid_allows_half_a_32nd_either_side_of_the_16th_grid() -> None:
    # 16th = 6 ticks; half a 32nd = 1.5 ticks → offsets of 0 or 1 tick are on the grid.
    starts = [0, 6, 7, 11, 15, 3, 8, 16]
    on = [True, True, True, True, False, False, False, False]
    t = tally([Note(s, s + 1, 60) for s in starts], [0] * 2, TPQ, 2)
    assert figures(t, TPQ).on_grid == pytest.approx(sum(on) / len(on))


def test_repeated_pitches_count_strikes_of_the_pitch_just_played() -> None:
    part = [Note(0, 6, 60), Note(6, 12, 60), Note(12, 18, 62), Note(18, 24, 60),
            Note(24, 30, 60)]
    f = figures(tally(part, [0], TPQ, 2), TPQ)
    assert f.repeated == pytest.approx(2 / 4)


def test_tallies_pool_over_pieces() -> None:
    chords = band_chords([Note(0, 24, 60)], TPQ, 1)
    a = tally([Note(0, 6, 60)], chords, TPQ, 1)      # in chord
    b = tally([Note(0, 6, 61), Note(6, 12, 48)], chords, TPQ, 1)   # out, in
    f = figures(a + b, TPQ)
    assert (f.notes, f.in_chord, f.notes_per_beat) == (3, pytest.approx(2 / 3), 1.5)
    assert f.pitch_range == 61 - 48
    assert (a + b).pieces == 2


def test_an_empty_part_has_no_ratios() -> None:
    f = figures(Tally(beats=4), TPQ)
    assert f.notes == 0 and f.in_chord is None and f.on_grid is None
    assert f.notes_per_beat == 0 and f.pitch_range is None


def test_piece_length_in_whole_beats() -> None:
    assert piece_beats([Note(0, 25, 60)], [Note(0, 3, 62)], tpq=TPQ) == 2
    assert piece_beats([], tpq=TPQ) == 1
