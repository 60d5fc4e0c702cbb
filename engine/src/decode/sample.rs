//! Temperature, then top-p (nucleus) over the allowed tokens, with a seeded ChaCha RNG so a seed
//! gives one sequence (docs/ENGINE.md "The loop").

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Temperature and nucleus sampling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (the most likely allowed token).
    pub temperature: f32,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (0 < top_p ≤ 1).
    pub top_p: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 0.95,
        }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            bail!("temperature must be a number ≥ 0, got {}", self.temperature);
        }
        if !self.top_p.is_finite() || self.top_p <= 0.0 || self.top_p > 1.0 {
            bail!("top-p must be in (0, 1], got {}", self.top_p);
        }
        Ok(())
    }
}

/// Seeded sampling over an allowed set.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    scratch: Vec<(u32, f64)>,
}

impl Sampler {
    pub fn new(params: SamplingParams, seed: u64) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            params,
            rng: ChaCha8Rng::seed_from_u64(seed),
            scratch: Vec::new(),
        })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// One token from `allowed` (non-empty) by `logits`. `None` if `allowed` is empty.
    pub fn sample(&mut self, logits: &[f32], allowed: &[u32]) -> Option<u32> {
        let logit = |id: u32| -> f64 {
            let l = logits
                .get(id as usize)
                .copied()
                .unwrap_or(f32::NEG_INFINITY);
            if l.is_nan() {
                f64::NEG_INFINITY
            } else {
                f64::from(l)
            }
        };
        let first = *allowed.first()?;
        if self.params.temperature == 0.0 {
            let mut best = first;
            for &id in allowed {
                if logit(id) > logit(best) {
                    best = id;
                }
            }
            return Some(best);
        }
        let t = f64::from(self.params.temperature);
        let max = allowed
            .iter()
            .map(|&id| logit(id))
            .fold(f64::NEG_INFINITY, f64::max);
        self.scratch.clear();
        if max == f64::NEG_INFINITY {
            // Nothing has a finite logit: uniform over the allowed set.
            let w = 1.0 / allowed.len() as f64;
            self.scratch.extend(allowed.iter().map(|&id| (id, w)));
        } else {
            let mut sum = 0.0;
            for &id in allowed {
                let w = ((logit(id) - max) / t).exp();
                sum += w;
                self.scratch.push((id, w));
            }
            for e in &mut self.scratch {
                e.1 /= sum;
            }
        }
        // Most likely first; ties by id, so the order never depends on the input order.
        self.scratch
            .sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let top_p = f64::from(self.params.top_p);
        let mut kept = 0;
        let mut mass = 0.0;
        for e in &self.scratch {
            kept += 1;
            mass += e.1;
            if mass >= top_p {
                break;
            }
        }
        let u: f64 = self.rng.random::<f64>() * mass;
        let mut acc = 0.0;
        for e in &self.scratch[..kept] {
            acc += e.1;
            if u < acc {
                return Some(e.0);
            }
        }
        Some(self.scratch[kept - 1].0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_is_seeded_and_respects_the_mask() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let allowed: Vec<u32> = vec![3, 7, 11, 20, 41];
        let run = |seed| {
            let mut s = Sampler::new(
                SamplingParams {
                    temperature: 1.0,
                    top_p: 1.0,
                },
                seed,
            )
            .unwrap();
            (0..200)
                .map(|_| s.sample(&logits, &allowed).unwrap())
                .collect::<Vec<_>>()
        };
        let a = run(5);
        assert_eq!(a, run(5));
        assert_ne!(a, run(6));
        assert!(a.iter().all(|t| allowed.contains(t)));
        // Every allowed token shows up at temperature 1 and top-p 1.
        for t in &allowed {
            assert!(a.contains(t), "{t} never sampled");
        }
        let mut greedy = Sampler::new(
            SamplingParams {
                temperature: 0.0,
                top_p: 1.0,
            },
            0,
        )
        .unwrap();
        let best = *allowed
            .iter()
            .max_by(|a, b| logits[**a as usize].total_cmp(&logits[**b as usize]))
            .unwrap();
        assert_eq!(greedy.sample(&logits, &allowed), Some(best));
        // A tiny top-p keeps only the most likely token.
        let mut nucleus = Sampler::new(
            SamplingParams {
                temperature: 1.0,
                top_p: 1e-6,
            },
            1,
        )
        .unwrap();
        assert!((0..50).all(|_| nucleus.sample(&logits, &allowed) == Some(best)));
        assert_eq!(greedy.sample(&logits, &[]), None);
    }

    #[test]
    fn bad_sampling_params_are_refused() {
        assert!(Sampler::new(
            SamplingParams {
                temperature: -1.0,
                top_p: 0.9
            },
            0
        )
        .is_err());
        assert!(Sampler::new(
            SamplingParams {
                temperature: 1.0,
                top_p: 0.0
            },
            0
        )
        .is_err());
        assert!(Sampler::new(
            SamplingParams {
                temperature: 1.0,
                top_p: 1.5
            },
            0
        )
        .is_err());
    }
}
