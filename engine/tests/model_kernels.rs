//! The engine's CPU kernels against candle's, through the whole model on a real random-weights
//! bundle (grouped-query attention, head_dim 16): a prefill, token-by-token decode steps, and a
//! refill after a prefix cut give the same logits with f32 weights, and with f16 and q8 weights
//! they stay as close to f32 as candle's own f16 and Q8_0 products do. The kernels themselves
//! against scalar references: src/model/kernels/tests.rs.

mod support;

use candle_core::{DType, Device};
use midicopilot_engine::bundle::Bundle;
use midicopilot_engine::model::{cpu_has_avx2, CpuKernels, ModelOptions, Olmo2, WeightFormat};

/// Deterministic token ids in the random bundles' vocabulary of 512.
fn ids(n: usize, seed: u64) -> Vec<u32> {
    support::token_ids(n, seed, 512)
}

/// Logits of a 300-token prefill, 20 decode steps, then a cut to 150 and a 30-token refill.
fn run(weights: WeightFormat, kernels: CpuKernels) -> Vec<Vec<f32>> {
    let bundle = Bundle::load(support::random_bundle_with(5, 640)).expect("bundle");
    let options = ModelOptions {
        weights,
        kernels,
        ..ModelOptions::default()
    };
    let model = Olmo2::load_with(&bundle, &Device::Cpu, options).expect("model");
    let mut cache = model.new_cache(400).expect("cache");
    let tokens = ids(320, 9);
    let mut out = model
        .forward_all(&mut cache, &tokens[..300])
        .expect("prefill");
    for &id in &tokens[300..] {
        out.push(model.forward(&mut cache, &[id]).expect("decode step"));
    }
    cache.truncate(150);
    out.extend(model.forward_all(&mut cache, &ids(30, 10)).expect("refill"));
    out
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

fn require_avx2() {
    assert!(
        cpu_has_avx2(),
        "this test compares the engine's AVX2 kernels with candle's; this CPU lacks AVX2"
    );
}

#[test]
fn f32_logits_are_candles_through_prefill_decode_and_refill() {
    require_avx2();
    let engine = run(WeightFormat::F32, CpuKernels::Engine);
    let candle = run(WeightFormat::F32, CpuKernels::Candle);
    assert_eq!(engine.len(), 350);
    let diff = max_abs_diff(&engine, &candle);
    assert!(diff < 1e-4, "engine against candle, f32: {diff}");
    // Not vacuous: neighbouring positions differ by far more.
    assert!(max_abs_diff(&engine[..1], &engine[1..2]) > 1e-2);
}

#[test]
fn smaller_weights_stay_as_close_to_f32_as_candles_do() {
    require_avx2();
    let f32_logits = run(WeightFormat::F32, CpuKernels::Candle);
    for weights in [WeightFormat::F16, WeightFormat::Q8] {
        let engine = max_abs_diff(&run(weights, CpuKernels::Engine), &f32_logits);
        let candle = max_abs_diff(&run(weights, CpuKernels::Candle), &f32_logits);
        assert!(engine > 0.0, "{weights:?} changed nothing: not a test");
        assert!(
            engine <= 1.25 * candle + 1e-4,
            "{weights:?}: engine {engine} from f32, candle {candle}"
        );
    }
}

#[test]
fn the_cache_is_f16_for_smaller_weights_on_the_engines_kernels_only() {
    require_avx2();
    let bundle = Bundle::load(support::random_bundle_with(5, 640)).expect("bundle");
    for (weights, kernels, kv) in [
        (WeightFormat::Q8, CpuKernels::Engine, DType::F16),
        (WeightFormat::F16, CpuKernels::Engine, DType::F16),
        (WeightFormat::F32, CpuKernels::Engine, DType::F32),
        (WeightFormat::Q8, CpuKernels::Candle, DType::F32),
    ] {
        let options = ModelOptions {
            weights,
            kernels,
            ..ModelOptions::default()
        };
        let model = Olmo2::load_with(&bundle, &Device::Cpu, options).expect("model");
        assert_eq!(model.kv_dtype(), kv, "{weights:?} on {kernels:?}");
        // Two bytes a key and a value: half the f32 cache.
        let bytes = model.new_cache(64).expect("cache").memory_bytes();
        assert_eq!(bytes, 2 * 2 * 2 * 64 * 16 * kv.size_in_bytes());
    }
}

#[test]
fn candles_kernels_stay_candles() {
    let bundle = Bundle::load(support::random_bundle_with(5, 640)).expect("bundle");
    let load = |kernels| {
        let options = ModelOptions {
            weights: WeightFormat::Q8,
            kernels,
            ..ModelOptions::default()
        };
        Olmo2::load_with(&bundle, &Device::Cpu, options).expect("model")
    };
    // Q8_0 blocks of 34 bytes a 32 weights, as candle holds them; the engine pads rows to
    // groups of 8 (none to pad here: every matrix has a multiple of 8 rows).
    let candle = load(CpuKernels::Candle).weight_stats().bytes;
    let engine = load(CpuKernels::Engine).weight_stats().bytes;
    assert_eq!(candle, engine);
    assert_eq!(CpuKernels::Candle.name(), "candle");
    assert!(!CpuKernels::Candle.engine_runs());
}
