//! Shared by the decoder tests: real random-weights bundles made by the project's own fixture
//! (`tests/engine_fixtures.py::make_random_bundle`, real transformers + tokenizers), real MIDI
//! files from the music21 package, and helpers that drive a context by hand; and [`live_rig`],
//! a real JACK server with a rig around the engine's real-time callback.

#![allow(dead_code)]

pub mod live_rig;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::Device;
use midicopilot_engine::bundle::Bundle;
use midicopilot_engine::decode::{allowed_tokens, Context, MaskState, Policy, Sampler};
use midicopilot_engine::events::{encode_midi_bytes, LanguageParams, NoteEvent};
use midicopilot_engine::model::Olmo2;
use midicopilot_engine::session::Engine;

/// Deterministic token ids below `vocab`.
pub fn token_ids(n: usize, seed: u64, vocab: u64) -> Vec<u32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % vocab) as u32
        })
        .collect()
}

pub fn python() -> String {
    std::env::var("MIDICOPILOT_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn repo_tests_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests"))
}

static BUNDLE_LOCK: Mutex<()> = Mutex::new(());

/// A random-weights bundle (vocabulary ~512, hidden 64, 2 layers), made once per seed and kept
/// under Cargo's test temp dir.
pub fn random_bundle(seed: u64) -> PathBuf {
    random_bundle_with(seed, 1024)
}

/// [`random_bundle`] with a given `max_position_embeddings`.
pub fn random_bundle_with(seed: u64, max_positions: usize) -> PathBuf {
    let _guard = BUNDLE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let name = format!("random-bundle-v512-h64-l2-s{seed}-p{max_positions}");
    let dir = root.join(&name);
    if dir.join("midicopilot.json").is_file() {
        return dir;
    }
    let tmp = root.join(format!("{name}-tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let script = format!(
        "import sys; sys.path.insert(0, {tests:?}); \
         from engine_fixtures import make_random_bundle; \
         make_random_bundle({tmp:?}, vocab_size=512, hidden_size=64, layers=2, heads=4, \
         kv_heads=2, seed={seed}, max_position_embeddings={max_positions})",
        tests = repo_tests_dir().display().to_string(),
        tmp = tmp.display().to_string(),
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} to make a random bundle: {e}", python()));
    assert!(
        out.status.success(),
        "making a random bundle failed (is the project installed: pip install -e .[test]?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another test binary may have made it meanwhile; either copy is the same bundle.
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(
        dir.join("midicopilot.json").is_file(),
        "no bundle at {}",
        dir.display()
    );
    dir
}

pub struct Loaded {
    pub bundle: Bundle,
    pub engine: Engine,
}

/// The bundle and an engine over it (model on the CPU), loaded once per seed per test binary.
pub fn engine(seed: u64) -> Arc<Loaded> {
    type Loads = Mutex<Vec<(u64, Arc<Loaded>)>>;
    static CACHE: OnceLock<Loads> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, l)) = cache.iter().find(|(s, _)| *s == seed) {
        return l.clone();
    }
    let dir = random_bundle(seed);
    let bundle = Bundle::load(&dir).expect("the random bundle loads");
    let model = Olmo2::load(&bundle, &Device::Cpu).expect("the random model loads");
    let engine = Engine::new(&bundle, Arc::new(model)).expect("engine");
    let loaded = Arc::new(Loaded { bundle, engine });
    cache.push((seed, loaded.clone()));
    loaded
}

/// Real MIDI files from the music21 package (exported and cached by the project's Python side).
pub fn music21_files() -> Vec<PathBuf> {
    static FILES: OnceLock<Vec<PathBuf>> = OnceLock::new();
    FILES
        .get_or_init(|| {
            let script = "from midicopilot.train.music21_midi import all_midi_files\n\
                          for p in all_midi_files(): print(p)";
            let out = Command::new(python())
                .args(["-c", script])
                .output()
                .expect("python runs");
            assert!(
                out.status.success(),
                "listing music21 MIDI files failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(PathBuf::from)
                .collect()
        })
        .clone()
}

/// A music21 file by name (e.g. `bach-bwv1.6.mid`).
pub fn music21_file(name: &str) -> PathBuf {
    music21_files()
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == name))
        .unwrap_or_else(|| panic!("{name} is not among the music21 MIDI files"))
}

/// The human part of a real file: its events on channels 1–15 before `until` (notes still
/// sounding then are closed there), as the file encoder reads them.
pub fn human_part(path: &Path, params: &LanguageParams, until: u64) -> Vec<NoteEvent> {
    let bytes = std::fs::read(path).expect("read MIDI");
    let events = encode_midi_bytes(&bytes, params).expect("a valid MIDI file");
    let mut out: Vec<NoteEvent> = events
        .into_iter()
        .filter(|e| e.channel != 0 && e.tick < until)
        .collect();
    let mut open = std::collections::BTreeMap::new();
    for e in &out {
        if e.is_on() {
            open.insert((e.channel, e.pitch), e.tick);
        } else {
            open.remove(&(e.channel, e.pitch));
        }
    }
    for ((ch, p), on) in open {
        out.push(NoteEvent::off(until.max(on + 1), ch, p));
    }
    out.sort();
    out
}

/// Sample `n` tokens into `ctx` under the mask (as the session does).
pub fn generate(
    ctx: &mut Context,
    engine: &Engine,
    sampler: &mut Sampler,
    policy: &Policy,
    n: usize,
) {
    let mut allowed = Vec::new();
    for _ in 0..n {
        let state = MaskState::new(*ctx.grammar(), ctx.current_word());
        let mut deadlines = ctx.deadlines(policy.max_note_ticks);
        deadlines.relax_for(&state, policy);
        allowed_tokens(&engine.trie, &state, policy, &deadlines, &mut allowed);
        assert!(
            !allowed.is_empty(),
            "empty mask after {:?}",
            String::from_utf8_lossy(ctx.body_text())
        );
        let id = sampler.sample(ctx.logits(), &allowed).expect("a token");
        ctx.push_token(id).expect("push");
    }
}

/// The logits of a fresh prefill of `tokens` (a new cache, one forward pass).
pub fn fresh_logits(engine: &Engine, tokens: &[u32]) -> Vec<f32> {
    let mut cache = engine.model.new_cache(tokens.len()).expect("cache");
    engine.model.forward(&mut cache, tokens).expect("forward")
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("decoder-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The body text parses strictly (resumed from the notes sounding at its start) and its events
/// are exactly the context's event list.
pub fn assert_body_consistent(ctx: &Context) {
    use midicopilot_engine::events::{LastWord, StreamDecoder};
    let text = String::from_utf8(ctx.body_text().to_vec()).expect("utf-8 body");
    if text.is_empty() {
        assert!(ctx.events().is_empty());
        return;
    }
    assert!(
        text.starts_with(' ') && !text.contains("  "),
        "body shape: {text:?}"
    );
    let mut words: Vec<&str> = text[1..].split(' ').collect();
    let g = ctx.grammar();
    let last = words.pop().unwrap_or("");
    let mut last = last.to_string();
    if g.in_item() {
        // Drop the partial item (items are 5 or 6 bytes).
        let b = last.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let w = if b.get(i + 1) == Some(&b'+') { 6 } else { 5 };
            if i + w > b.len() {
                break;
            }
            i += w;
        }
        last.truncate(i);
    } else if g.in_time_word() && g.pending_time().is_none() {
        last.clear();
    }
    if !last.is_empty() {
        words.push(&last);
    }
    let mut d = StreamDecoder::resume(*ctx.params(), 0, *ctx.base_sounding(), LastWord::Header);
    let mut events = Vec::new();
    for w in &words {
        match d.feed_word(w) {
            Ok(ev) => events.extend(ev),
            Err(e) => panic!("body word {w:?} refused: {e}\nbody: {text:?}"),
        }
    }
    let base = ctx.base_tick();
    let got: Vec<NoteEvent> = events
        .into_iter()
        .map(|e| NoteEvent {
            tick: e.tick + base,
            ..e
        })
        .collect();
    let want: Vec<NoteEvent> = ctx.events().iter().map(|e| e.event).collect();
    assert_eq!(
        got, want,
        "the body text and the event list disagree\nbody: {text:?}"
    );
}
