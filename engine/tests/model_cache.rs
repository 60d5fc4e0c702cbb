//! The OLMo2 forward pass and its KV cache on a real random-weights bundle (made by the project's
//! fixture, tests/engine_fixtures.py, with transformers and tokenizers): the cache gives the same
//! logits as one pass over the whole sequence, a prefix cut gives the logits of a fresh prefill,
//! misuse is an error (never a panic), and one model serves several caches on several threads.
//! Parity with transformers itself is tests/test_engine_parity.py.

mod support;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use candle_core::Device;
use midicopilot_engine::bundle::Bundle;
use midicopilot_engine::model::{KvCache, Olmo2};

const TOLERANCE: f32 = 1e-4;

/// A random bundle (vocabulary 512, hidden 64, 2 layers, 4 heads on 2 key heads), made once.
fn bundle_dir() -> PathBuf {
    support::random_bundle_with(5, 640)
}

fn model() -> Arc<Olmo2> {
    static MODEL: OnceLock<Arc<Olmo2>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let bundle = Bundle::load(bundle_dir()).expect("the random bundle loads");
            Arc::new(Olmo2::load(&bundle, &Device::Cpu).expect("the model loads"))
        })
        .clone()
}

/// Deterministic token ids in the random bundles' vocabulary of 512.
fn ids(n: usize, seed: u64) -> Vec<u32> {
    support::token_ids(n, seed, 512)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn fresh(model: &Olmo2, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = model.new_cache(tokens.len()).expect("cache");
    model.forward_all(&mut cache, tokens).expect("forward")
}

#[test]
fn decoding_through_the_cache_equals_one_pass() {
    let model = model();
    let tokens = ids(300, 1);
    let whole = fresh(&model, &tokens);
    assert_eq!(whole.len(), 300);
    assert_eq!(whole[0].len(), model.vocab_size());

    // A prefill of 270 (past position 256), then one token at a time.
    let mut cache = model.new_cache(300).expect("cache");
    let prefill = model.forward(&mut cache, &tokens[..270]).expect("prefill");
    assert!(max_abs_diff(&prefill, &whole[269]) < TOLERANCE);
    for (i, &id) in tokens.iter().enumerate().skip(270) {
        let step = model.forward(&mut cache, &[id]).expect("step");
        let diff = max_abs_diff(&step, &whole[i]);
        assert!(diff < TOLERANCE, "position {i}: {diff}");
    }
    assert_eq!(cache.len(), 300);
    assert_eq!(cache.remaining(), 0);
    // Different positions give different logits (the comparison above is not vacuous).
    assert!(max_abs_diff(&whole[298], &whole[299]) > 100.0 * TOLERANCE);
}

#[test]
fn a_prefix_cut_then_new_tokens_equals_a_fresh_prefill() {
    let model = model();
    let old = ids(320, 2);
    let new = ids(60, 3);
    let mut cache = model.new_cache(400).expect("cache");
    model.forward(&mut cache, &old).expect("prefill");
    for keep in [300usize, 257, 40, 1] {
        cache.truncate(keep);
        assert_eq!(cache.len(), keep);
        let got = model.forward_all(&mut cache, &new).expect("refill");
        let mut seq = old[..keep].to_vec();
        seq.extend_from_slice(&new);
        let want = fresh(&model, &seq);
        for (j, row) in got.iter().enumerate() {
            let diff = max_abs_diff(row, &want[keep + j]);
            assert!(diff < TOLERANCE, "cut to {keep}, new token {j}: {diff}");
        }
        // Restore the old sequence for the next cut (truncate, then re-run the old suffix).
        cache.truncate(keep);
        model.forward(&mut cache, &old[keep..]).expect("restore");
    }
}

#[test]
fn truncate_and_clear_move_only_the_length() {
    let model = model();
    let mut cache = model.new_cache(64).expect("cache");
    let bytes = cache.memory_bytes();
    // 2 layers × (K + V) × 2 key heads × 64 rows × head_dim 16 × 4 bytes.
    assert_eq!(bytes, 2 * 2 * 2 * 64 * 16 * 4);
    assert!(cache.is_empty());
    model.forward(&mut cache, &ids(10, 4)).expect("forward");
    assert_eq!(
        (cache.len(), cache.capacity(), cache.remaining()),
        (10, 64, 54)
    );
    cache.truncate(20); // longer than held: no change
    assert_eq!(cache.len(), 10);
    cache.truncate(3);
    assert_eq!(cache.len(), 3);
    cache.clear();
    assert!(cache.is_empty());
    assert_eq!(cache.memory_bytes(), bytes);
    // A cleared cache starts at position 0 again.
    let a = model.forward(&mut cache, &ids(5, 5)).expect("forward");
    assert!(max_abs_diff(&a, &fresh(&model, &ids(5, 5))[4]) < TOLERANCE);
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let model = model();
    let mut cache = model.new_cache(8).expect("cache");
    let err = model.forward(&mut cache, &[]).unwrap_err();
    assert!(err.to_string().contains("no tokens"), "{err}");
    let err = model.forward(&mut cache, &ids(9, 6)).unwrap_err();
    assert!(err.to_string().contains("do not fit the KV cache"), "{err}");
    assert_eq!(cache.len(), 0, "a refused pass leaves the cache as it was");
    let err = model.forward(&mut cache, &[1, 512]).unwrap_err();
    assert!(err.to_string().contains("token id 512 is outside"), "{err}");
    let err = model.new_cache(641).unwrap_err();
    assert!(err.to_string().contains("640 positions"), "{err}");
    assert!(model.new_cache(0).is_err());
    model
        .forward(&mut cache, &ids(8, 7))
        .expect("exactly full is fine");
    assert!(model.forward(&mut cache, &[1]).is_err());
    assert_eq!(model.max_position(), 640);
}

#[test]
fn one_model_serves_caches_on_several_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Olmo2>();
    assert_send_sync::<KvCache>();
    let model = model();
    let want: Vec<Vec<f32>> = (0..3u64)
        .map(|s| fresh(&model, &ids(40, 10 + s)).remove(39))
        .collect();
    let handles: Vec<_> = (0..3u64)
        .map(|s| {
            let model = model.clone();
            std::thread::spawn(move || {
                let mut cache = model.new_cache(40).expect("cache");
                let tokens = ids(40, 10 + s);
                model.forward(&mut cache, &tokens[..20]).expect("prefill");
                let mut last = Vec::new();
                for &id in &tokens[20..] {
                    last = model.forward(&mut cache, &[id]).expect("step");
                }
                last
            })
        })
        .collect();
    for (h, want) in handles.into_iter().zip(want) {
        let got = h.join().expect("thread");
        assert!(max_abs_diff(&got, &want) < TOLERANCE);
    }
}

#[test]
fn bundle_refusals_say_what_to_do() {
    let good = bundle_dir();
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("model-cache-refusals-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch");
    let copy = |name: &str| {
        let dir = scratch.join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        for f in [
            "model.safetensors",
            "config.json",
            "tokenizer.json",
            "midicopilot.json",
        ] {
            std::fs::copy(good.join(f), dir.join(f)).expect("copy");
        }
        dir
    };
    let edit = |dir: &PathBuf, file: &str, key: &str, value: serde_json::Value| {
        let path = dir.join(file);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        v[key] = value;
        std::fs::write(&path, v.to_string()).expect("write");
    };

    let ok = Bundle::load(&good).expect("loads");
    assert_eq!((ok.pad_id, ok.eos_id), (0, 1));
    assert_eq!(ok.meta.params.ticks_per_quarter, 24);
    assert_eq!(ok.meta_token_ids.len(), ok.meta.meta_tokens.len());

    let dir = copy("pad");
    edit(&dir, "config.json", "pad_token_id", serde_json::json!(3));
    let msg = Bundle::load(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("pad_token_id 3") && msg.contains("midicopilot export"),
        "{msg}"
    );

    let dir = copy("tpq");
    edit(
        &dir,
        "midicopilot.json",
        "params",
        serde_json::json!({"ticks_per_quarter": 25, "velocity_bins": 8}),
    );
    let msg = Bundle::load(&dir).unwrap_err().to_string();
    assert!(msg.contains("ticks_per_quarter 25"), "{msg}");

    let dir = copy("format");
    edit(
        &dir,
        "midicopilot.json",
        "format",
        serde_json::json!("something-else"),
    );
    let msg = Bundle::load(&dir).unwrap_err().to_string();
    assert!(msg.contains("\"something-else\""), "{msg}");

    let dir = copy("tokenizer");
    std::fs::write(dir.join("tokenizer.json"), "{\"not\": \"a tokenizer\"}").expect("write");
    let msg = Bundle::load(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("tokenizer.json is not a Hugging Face tokenizer"),
        "{msg}"
    );

    let dir = copy("untied");
    edit(
        &dir,
        "config.json",
        "tie_word_embeddings",
        serde_json::json!(true),
    );
    // Tied now: the lm_head in the file is ignored, as transformers does; loading still works.
    let b = Bundle::load(&dir).expect("tied loads");
    assert!(Olmo2::load(&b, &Device::Cpu).is_ok());
    let _ = std::fs::remove_dir_all(&scratch);
}
