"""Corpus building on real MIDI files (music21's), and the config loader."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mido
import pytest

from midicopilot.train import config as config_mod
from midicopilot.train import corpus as corpus_mod
from midicopilot.train import events as ev
from midicopilot.train.music21_midi import bach_chorales, package_midi_files

PARAMS = ev.LanguageParams()


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "midicopilot.host.cli", *args],
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr}")
    return result


@pytest.fixture(scope="module")
def chorales() -> list[Path]:
    files = bach_chorales()
    assert len(files) >= 20
    return files[:12]


def _write_drum_file(path: Path) -> Path:
    """Bass on channel 2 (low notes, near the bottom of the range) and drums on channel 9."""
    mid = mido.MidiFile(ticks_per_beat=96)
    bass, drums = mido.MidiTrack(), mido.MidiTrack()
    bass.append(mido.MetaMessage("track_name", name="Bass", time=0))
    drums.append(mido.MetaMessage("track_name", name="", time=0))
    for pitch in (1, 4, 36, 40, 125):
        bass.append(mido.Message("note_on", channel=2, note=pitch, velocity=90, time=0))
        bass.append(mido.Message("note_off", channel=2, note=pitch, velocity=0, time=96))
    for _ in range(5):
        drums.append(mido.Message("note_on", channel=9, note=36, velocity=100, time=0))
        drums.append(mido.Message("note_off", channel=9, note=36, velocity=0, time=96))
    mid.tracks.extend([bass, drums])
    mid.save(path)
    return path


# --- pieces → examples --------------------------------------------------------------------------

def test_each_part_in_turn_on_channel_0(chorales: list[Path]) -> None:
    piece = ev.read_piece(chorales[0], PARAMS)
    parts = sorted({n.source for n in piece.notes})
    assert len(parts) >= 4
    examples = corpus_mod.piece_examples(piece, PARAMS, "chorale")
    assert len(examples) == len(parts)
    first_onset = min(n.start for n in piece.notes)
    for index, (example, target) in enumerate(zip(examples, parts, strict=True)):
        meta, events = ev.parse_text(example.text, PARAMS)
        assert meta[0] == "[GENRE_CHORALE]"
        assert meta[1] == f"[PART_{corpus_mod.canonical_part(piece.part_names[target])}]"
        # channel 0 holds exactly the target part's notes from its entry on (same onsets and
        # pitches): never in the band's first instant, as live
        beats = corpus_mod.entry_beats(piece.path, index, 0)
        entry = first_onset + beats * PARAMS.ticks_per_quarter
        want = sorted((n.start, n.pitch) for n in ev.normalize_notes(
            [n for n in piece.notes if n.source == target and n.start > entry]))
        got = sorted((e.tick, e.pitch) for e in events if e.kind == "on" and e.channel == 0)
        assert got == want
        channels = {e.channel for e in events}
        assert channels == set(range(len(parts)))  # the others on 1, 2, 3, …
    assert {e.part for e in examples} >= {"[PART_SOPRANO]", "[PART_ALTO]", "[PART_TENOR]",
                                         "[PART_BASS]"}


def test_channel_map_keeps_drums_on_9_and_folds_extra_parts() -> None:
    parts = [(i, 0) for i in range(1, 18)] + [(20, 9)]
    mapping = corpus_mod.channel_map(parts, (3, 0))
    assert mapping[(3, 0)] == 0 and mapping[(20, 9)] == 9
    others = [mapping[p] for p in parts if p not in ((3, 0), (20, 9))]
    assert 9 not in others and 0 not in others
    assert others[:14] == [c for c in range(1, 16) if c != 9]  # then folding starts again
    assert others[14:] == [1, 2]
    # the drum part as the target goes to 0, and 9 becomes free for the others
    mapping = corpus_mod.channel_map([(1, 0), (2, 9)], (2, 9))
    assert mapping == {(2, 9): 0, (1, 0): 1}


def test_transposition_moves_by_octaves_and_spares_drums(tmp_path: Path) -> None:
    piece = ev.read_piece(_write_drum_file(tmp_path / "drums.mid"), PARAMS)
    examples = corpus_mod.piece_examples(piece, PARAMS, None, corpus_mod.TRANSPOSITIONS)
    by_key = {(e.part, e.transposition): e for e in examples}
    assert {e.part for e in examples} == {"[PART_BASS]", "[PART_DRUMS]"}
    for shift in corpus_mod.TRANSPOSITIONS:
        _, events = ev.parse_text(by_key[("[PART_BASS]", shift)].text, PARAMS)
        bass = [e.pitch for e in events if e.kind == "on" and e.channel == 0]
        drums = [e.pitch for e in events if e.kind == "on" and e.channel == 9]
        assert drums == [36] * 5  # never transposed, still on channel 9
        # The bass enters after the drums' first beat(s): a beat a note.
        entered = corpus_mod.entry_beats(piece.path, 0, shift) + 1
        expected = [p + shift for p in (1, 4, 36, 40, 125)][entered:]
        for want, got in zip(expected, bass, strict=True):
            assert 0 <= got <= 127 and (got - want) % 12 == 0 and abs(got - want) <= 12
            if 0 <= want <= 127:
                assert got == want
    assert corpus_mod.transpose_pitch(1, -5) == 8 and corpus_mod.transpose_pitch(125, 6) == 119


def test_part_words_are_canonical_voices_and_instruments() -> None:
    names = {"Soprano": "SOPRANO", "Alto Oboe 2 Viloin 2": "ALTO", "Violin 1": "VIOLIN",
             "Bass Continuo": "BASS", "Double Bass": "CONTRABASS", "Horn 2": "HORN",
             "Bassus": "BASS", "Recorders": "RECORDER", "Piano Right Hand": "PIANO"}
    for name, word in names.items():
        assert corpus_mod.canonical_part(name) == word, name
    assert corpus_mod.canonical_part("Colnel Hornars March jmp 050") is None
    assert corpus_mod.canonical_part("") is None


def test_the_target_enters_after_the_band_as_live() -> None:
    # Half the examples from the band's second instant, then a quarter a beat later, …: the
    # chance to come in is the same at every beat, however long the part has waited.
    beats = [corpus_mod.entry_beats(f"piece{i}", i % 4, i % 12) for i in range(4000)]
    share = [beats.count(b) / len(beats) for b in range(4)]
    assert share == pytest.approx([0.5, 0.25, 0.125, 0.0625], abs=0.03)
    assert max(beats) <= corpus_mod.MAX_ENTRY_BEATS
    assert corpus_mod.entry_beats("a", 0, 0) == corpus_mod.entry_beats("a", 0, 0)


def test_transposed_chorale_keeps_rhythm(chorales: list[Path]) -> None:
    piece = ev.read_piece(chorales[1], PARAMS)
    examples = corpus_mod.piece_examples(piece, PARAMS, None, (0, 5))
    plain = {(e.part): e for e in examples if e.transposition == 0}
    for example in (e for e in examples if e.transposition == 5):
        _, shifted = ev.parse_text(example.text, PARAMS)
        _, original = ev.parse_text(plain[example.part].text, PARAMS)
        # The target's entry is drawn per key: compare from the later of the two entries on.
        since = max(min((e.tick for e in x if e.channel == 0), default=0)
                    for x in (shifted, original))

        def ons(events, shift, since=since):
            return sorted((e.tick, e.channel, corpus_mod.transpose_pitch(e.pitch, shift))
                          for e in events if e.kind == "on" and (e.channel or e.tick >= since))

        assert ons(shifted, 0) == ons(original, 5)


# --- whole corpora ------------------------------------------------------------------------------

def test_build_corpus_splits_by_piece_and_reports_bad_files(tmp_path: Path,
                                                            chorales: list[Path]) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "not-midi.mid").write_bytes(b"hello, this is not MIDI")
    (bad / "truncated.mid").write_bytes(chorales[0].read_bytes()[:60])
    skipped: list[tuple[str, str]] = []
    summary = corpus_mod.build_corpus(
        [*chorales[:8], bad], tmp_path / "c", genre="chorale", transpose=True, val_fraction=0.25,
        seed=3, progress=False, on_skip=lambda p, r: skipped.append((p, r)))
    assert sorted(Path(p).name for p, _ in skipped) == ["not-midi.mid", "truncated.mid"]
    assert all(reason and "\n" not in reason for _, reason in skipped)
    manifest = json.loads((tmp_path / "c" / "corpus.json").read_text())
    assert len(manifest["skipped"]) == 2
    assert summary.pieces == {"train": 6, "val": 2}
    train = [json.loads(line) for line in (tmp_path / "c" / "train.jsonl").open()]
    val = [json.loads(line) for line in (tmp_path / "c" / "val.jsonl").open()]
    assert len(train) == summary.examples["train"] and len(val) == summary.examples["val"]
    train_pieces, val_pieces = {e["piece"] for e in train}, {e["piece"] for e in val}
    assert not train_pieces & val_pieces
    assert sorted(val_pieces) == manifest["split"]["val"]
    # every piece appears in all 12 keys for every part, all on one side of the split
    per_piece_part = Counter((e["piece"], e["part"]) for e in train + val)
    assert set(per_piece_part.values()) == {12}
    assert {e["transposition"] for e in train} == set(range(-5, 7))
    for example in train[:50]:
        meta, events = ev.parse_text(example["text"], PARAMS)
        assert meta[0] == "[GENRE_CHORALE]" and meta[1] == example["part"]
        assert sum(1 for e in events if e.kind == "on") == example["notes"]
    assert "[GENRE_CHORALE]" in manifest["meta_tokens"]
    # the split is a function of the seed
    again = corpus_mod.build_corpus(chorales[:8], tmp_path / "c2", val_fraction=0.25, seed=3,
                                    progress=False)
    assert again.pieces == summary.pieces
    assert json.loads((tmp_path / "c2" / "corpus.json").read_text())["split"] == manifest["split"]


def test_genre_map_and_rare_part_names(tmp_path: Path) -> None:
    files = package_midi_files()
    genre_map = tmp_path / "genres.toml"
    genre_map.write_text('"test0*.mid" = "early"\n"k525*" = "mozart"\n')
    corpus_mod.build_corpus(files, tmp_path / "c", genre="other", val_fraction=0,
                            genre_map=corpus_mod.load_genre_map(genre_map), min_part_count=2,
                            progress=False)
    examples = [json.loads(line) for line in (tmp_path / "c" / "train.jsonl").open()]
    for example in examples:
        name = Path(example["piece"]).name
        genre = corpus_mod.header_words(example["text"])[0]
        want = "EARLY" if name.startswith("test0") else \
            "MOZART" if name.startswith("k525") else "OTHER"
        assert genre == f"[GENRE_{want}]"
    parts = Counter(e["part"] for e in examples)
    # song titles used as track names (test07.mid) are rare: they fall back to the GM family
    assert "[PART_COLNEL_HORNARS_MARCH_JMP_050]" not in parts
    assert "[PART_VIOLA]" in parts  # used by several pieces, kept


def test_corpus_cli(tmp_path: Path, chorales: list[Path]) -> None:
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01")
    out = tmp_path / "corpus"
    result = _cli("corpus", "build", str(chorales[0]), str(chorales[1]), str(bad), "-o", str(out),
                  "--genre", "chorale", "--val-fraction", "0.5")
    assert "train: 1 pieces" in result.stdout and "val: 1 pieces" in result.stdout
    assert "skipped files: 1" in result.stdout
    skipped = [line for line in result.stderr.splitlines() if "broken.mid" in line]
    assert len(skipped) == 1 and skipped[0].startswith("midicopilot: skipped")
    assert (out / "corpus.json").exists()


@pytest.mark.parametrize("args, message", [
    (["/nonexistent/folder"], "no such file or folder"),
    ([], "no SOURCES"),
])
def test_corpus_cli_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    result = _cli("corpus", "build", *args, "-o", str(tmp_path / "c"), check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("midicopilot: error:") and message in lines[0]


def test_corpus_of_only_bad_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.mid").write_bytes(b"junk")
    result = _cli("corpus", "build", str(tmp_path), "-o", str(tmp_path / "c"), "--quiet",
                  check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("midicopilot: error: no readable")
    assert "Traceback" not in result.stderr


# --- config ---------------------------------------------------------------------------------------

def test_config_phases_and_overrides() -> None:
    align = config_mod.resolve("tiny", "align")
    style = config_mod.resolve("tiny", "style")
    assert align.data.header is False and style.data.header is True
    assert align.train.max_steps != style.train.max_steps
    sets = ["train.max_steps=7", "style.train.lr=0.5", "lora.target_modules=['q_proj']"]
    assert config_mod.resolve("tiny", "align", sets).train.max_steps == 7
    style = config_mod.resolve("tiny", "style", sets)
    assert (style.train.max_steps, style.train.lr, style.lora.target_modules) == \
        (7, 0.5, ["q_proj"])
    big = config_mod.resolve("olmo2-1b", "align")
    assert big.model.base == "allenai/OLMo-2-0425-1B" and big.model.train_base_modules == []
    assert big.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert big.lora.modules_to_save == ["embed_tokens", "lm_head"]


@pytest.mark.parametrize("sets, message", [
    (["train.lrr=1"], "unknown config key train.lrr"),
    (["train.lr=fast"], "train.lr must be float"),
    (["model.quantize=2bit"], "model.quantize"),
    (["train.max_steps=0"], "max_steps"),
])
def test_config_errors(sets: list[str], message: str) -> None:
    with pytest.raises(config_mod.ConfigError, match=message):
        config_mod.resolve("tiny", "align", sets)
