"""The Python event language against the golden vectors, real music21 files and properties."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import mido
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from midicopilot.train import events
from midicopilot.train.events import LanguageParams, NoteEvent, StreamDecoder, TextError

GOLDEN = Path(__file__).parent / "golden"
PARAMS = LanguageParams()
TEXT_CASES = sorted((GOLDEN / "midi").glob("*.txt"))
ERROR_CASES = sorted((GOLDEN / "midi").glob("*.err"))
WORD_CASES = json.loads((GOLDEN / "words.json").read_text())["cases"]


def test_golden_set_is_there():
    assert len(TEXT_CASES) >= 10 and len(ERROR_CASES) >= 4 and len(WORD_CASES) >= 20


@pytest.mark.parametrize("expected", TEXT_CASES, ids=lambda p: p.stem)
def test_golden_encode(expected: Path):
    text = events.encode_file(expected.with_suffix(".mid"), PARAMS)
    assert text + "\n" == expected.read_text()


@pytest.mark.parametrize("expected", ERROR_CASES, ids=lambda p: p.stem)
def test_golden_refused(expected: Path):
    path = expected.with_suffix(".mid")
    with pytest.raises(events.MidiError) as err:
        events.encode_file(path, PARAMS)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert expected.read_text().strip() in message.lower()


def _feed(decoder: StreamDecoder, words: list[str]) -> tuple[list[list], tuple[int, str] | None]:
    produced: list[list] = []
    for i, word in enumerate(words):
        try:
            produced.extend(list(e) for e in decoder.feed_word(word))
        except TextError as err:
            return produced, (i, str(err))
    return produced, None


@pytest.mark.parametrize("case", WORD_CASES, ids=lambda c: c["name"])
def test_golden_words(case: dict):
    decoder = StreamDecoder(PARAMS)
    produced, rejected = _feed(decoder, case["words"])
    if "events" in case:
        assert rejected is None
        assert produced == case["events"]
    else:
        assert rejected is not None, "every word was accepted"
        assert rejected[0] == case["reject_at"]
        assert case["reason"].lower() in rejected[1].lower()
        if "after_reject" in case:
            more, again = _feed(decoder, case["after_reject"]["words"])
            assert again is None and more == case["after_reject"]["events"]


# --- real files ----------------------------------------------------------------------------------

def _check_well_formed(text: str) -> list[NoteEvent]:
    """Properties every encoded text has: parses strictly, sorted, every on has its off, time words
    canonical (the strict parser checks that), and no grid word ever glued to an offset word."""
    _, evs = events.parse_text(text, PARAMS)
    assert [e.sort_key() for e in evs] == sorted(e.sort_key() for e in evs)
    sounding: set[tuple[int, int]] = set()
    for e in evs:
        voice = (e.channel, e.pitch)
        if e.kind == "on":
            assert voice not in sounding
            sounding.add(voice)
        else:
            assert voice in sounding
            sounding.remove(voice)
    assert not sounding, "a note-on without its note-off"
    for word in text.split(" "):
        if word.startswith("P_"):
            n = int(word[2:])
            assert 1 <= n < PARAMS.grid or (n % PARAMS.grid == 0 and n <= PARAMS.max_grid), word
    return evs


def test_real_files_round_trip_and_properties(music21_midi_files, tmp_path):
    """decode then encode gives the same text, on every music21-derived file."""
    checked = notes = 0
    for path in music21_midi_files:
        text = events.encode_file(path, PARAMS)
        evs = _check_well_formed(text)
        notes += sum(e.kind == "on" for e in evs)
        out = tmp_path / "round.mid"
        events.text_to_midi(text, PARAMS).save(out)
        assert events.encode_file(out, PARAMS) == text, path
        checked += 1
    print(f"round trip held on {checked} music21-derived MIDI files, {notes} notes")
    assert checked == len(music21_midi_files) and notes > 100_000


def test_streaming_encoder_writes_the_batch_text(music21_midi_files):
    for path in music21_midi_files[:60]:
        piece = events.read_piece(path, PARAMS)
        evs = events.notes_to_events(events.normalize_notes(piece.notes), PARAMS)
        encoder = events.StreamEncoder(PARAMS)
        words: list[str] = []
        for event in evs:
            words.extend(encoder.push(event))
        words.extend(encoder.flush())
        assert " ".join(words) == events.events_to_text(evs, PARAMS), path


# --- properties on random event streams ----------------------------------------------------------

@st.composite
def note_lists(draw):
    notes = []
    for _ in range(draw(st.integers(0, 40))):
        start = draw(st.integers(0, 600))
        notes.append(events.Note(draw(st.integers(0, 15)), draw(st.integers(0, 127)), start,
                                 start + draw(st.integers(1, 300)), draw(st.integers(1, 127)),
                                 order=len(notes)))
    return notes


@settings(max_examples=300, deadline=None)
@given(note_lists(), st.sampled_from([LanguageParams(), LanguageParams(48, 4),
                                      LanguageParams(2, 1)]))
def test_text_round_trip_property(notes, params):
    evs = events.notes_to_events(events.normalize_notes(notes), params)
    text = events.events_to_text(evs, params, ["[GENRE_TEST]"])
    meta, parsed = events.parse_text(text, params)
    assert meta == ["[GENRE_TEST]"] and parsed == evs
    mid = events.text_to_midi(text, params)
    buf = io.BytesIO()
    mid.save(file=buf)
    assert mido.MidiFile(file=io.BytesIO(buf.getvalue())).ticks_per_beat == params.ticks_per_quarter


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 5000), st.sampled_from([LanguageParams(), LanguageParams(48, 8)]))
def test_time_words_sum_and_shape(delta, params):
    words = events.time_words(delta, params)
    assert sum(int(w[2:]) for w in words) == delta
    offsets = [w for w in words if int(w[2:]) < params.grid]
    assert len(offsets) <= 1 and (not offsets or words[-1] == offsets[0])
    assert sum(int(w[2:]) != params.max_grid for w in words) <= 2


def test_velocity_bins_round_trip():
    for bins in range(1, 27):
        for b in range(bins):
            assert events.bin_of_velocity(events.velocity_of_bin(b, bins), bins) == b


# --- the commands --------------------------------------------------------------------------------

def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "midicopilot.host.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_cli_encode_decode_round_trip(tmp_path):
    source = GOLDEN / "midi" / "sort_order.mid"
    first = _cli("encode", str(source), "--genre", "blues", "--part", "piano")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("[GENRE_BLUES] [PART_PIANO] 0+040e")
    (tmp_path / "t.txt").write_text(first.stdout)
    assert _cli("decode", str(tmp_path / "t.txt"), "-o", str(tmp_path / "o.mid")).returncode == 0
    again = _cli("encode", str(tmp_path / "o.mid"), "--genre", "blues", "--part", "piano")
    assert again.stdout == first.stdout


@pytest.mark.parametrize("expected", ERROR_CASES, ids=lambda p: p.stem)
def test_cli_bad_midi_is_one_line(expected: Path):
    for command in ("encode", "stats"):
        result = _cli(command, str(expected.with_suffix(".mid")))
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert expected.with_suffix(".mid").name in lines[0]


def test_cli_bad_text_is_one_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("0+060a P_12 P_12 0-060\n")
    result = _cli("decode", str(bad), "-o", str(tmp_path / "x.mid"))
    assert result.returncode != 0 and not (tmp_path / "x.mid").exists()
    assert len(result.stderr.strip().splitlines()) == 1 and "canonical" in result.stderr


def test_cli_stats_counts(music21_midi_files):
    result = _cli("stats", *map(str, music21_midi_files[:5]))
    assert result.returncode == 0, result.stderr
    total = result.stdout.strip().splitlines()[-1].split()
    notes = sum(events.text_stats(events.encode_file(p)).notes for p in music21_midi_files[:5])
    assert int(total[0]) == notes
