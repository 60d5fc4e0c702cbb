//! The context and KV-cache policy on a real (random-weights) model: a prefix cut and a flush
//! both leave a cache whose next-token logits equal a fresh prefill of the new context.

mod support;

use midicopilot_engine::decode::{Context, ContextConfig, Policy, Sampler, SamplingParams};
use midicopilot_engine::events::{LanguageParams, NoteEvent};
use midicopilot_engine::session::{Engine, Session, SessionConfig};
use support::*;

const TOLERANCE: f32 = 1e-4;

fn new_context(engine: &Engine, cfg: ContextConfig) -> Context {
    let header = engine.header(None, None).expect("header");
    Context::new(
        engine.model.clone(),
        engine.tokenizer.clone(),
        engine.table.clone(),
        engine.params,
        &header,
        engine.opener,
        cfg,
    )
    .expect("context")
}

fn policy() -> Policy {
    Policy {
        max_note_ticks: 96,
        max_polyphony: 6,
    }
}

fn assert_matches_fresh_prefill(ctx: &Context, engine: &Engine, what: &str) {
    let tokens = ctx.tokens();
    assert_eq!(
        ctx.cache_len(),
        tokens.len(),
        "{what}: the cache holds the whole context"
    );
    let diff = max_abs_diff(ctx.logits(), &fresh_logits(engine, &tokens));
    assert!(
        diff < TOLERANCE,
        "{what}: logits differ from a fresh prefill by {diff}"
    );
}

/// Distinct ticks of the tentative events, ascending.
fn tentative_ticks(ctx: &Context) -> Vec<u64> {
    let mut t: Vec<u64> = ctx.tentative().map(|e| e.tick).collect();
    t.dedup();
    t
}

#[test]
fn a_prefix_cut_leaves_the_logits_of_a_fresh_prefill() {
    let loaded = engine(0);
    let engine = &loaded.engine;
    let mut cuts_checked = 0;
    for seed in 0..6u64 {
        let mut ctx = new_context(engine, ContextConfig::for_limit(512));
        let mut sampler = Sampler::new(
            SamplingParams {
                temperature: 1.0,
                top_p: 1.0,
            },
            seed,
        )
        .unwrap();
        ctx.insert_human(&[NoteEvent::on(0, 1, 60, 4), NoteEvent::on(0, 2, 48, 3)])
            .unwrap();
        assert_matches_fresh_prefill(&ctx, engine, "after the first human events");
        // Generate until the model has tentative events at three distinct ticks or more.
        let mut n = 0;
        while tentative_ticks(&ctx).len() < 3 && n < 400 {
            generate(&mut ctx, engine, &mut sampler, &policy(), 1);
            n += 1;
        }
        let ticks = tentative_ticks(&ctx);
        assert!(
            ticks.len() >= 3,
            "seed {seed}: the model wrote too few events in {n} tokens"
        );
        assert_matches_fresh_prefill(&ctx, engine, "after generation");

        // The first instant's events go out; a human plays at the second one's tick (same
        // instant: it must be cut too), or one tick before it.
        let released = ctx.release_until(ticks[0]);
        assert!(!released.is_empty());
        let t = if seed % 2 == 0 {
            ticks[1]
        } else {
            ticks[1] - 1
        }
        .max(ticks[0] + 1);
        let tokens_before = ctx.len();
        let cuts_before = ctx.stats().prefix_cuts;
        let human = NoteEvent::off(t, 1, 60);
        ctx.insert_human(&[human]).unwrap();

        assert_eq!(
            ctx.stats().prefix_cuts,
            cuts_before + 1,
            "seed {seed}: no prefix cut"
        );
        assert!(
            ctx.tentative().all(|e| e.tick < t),
            "seed {seed}: a tentative event at or after {t} survived"
        );
        let events: Vec<NoteEvent> = ctx.events().iter().map(|e| e.event).collect();
        for r in &released {
            assert!(
                events.contains(r),
                "seed {seed}: released {r:?} was taken back"
            );
        }
        assert!(events.contains(&human));
        assert!(ctx.len() <= tokens_before + 8);
        assert_body_consistent(&ctx);
        assert_matches_fresh_prefill(&ctx, engine, "right after the prefix cut");

        // Generation goes on from the cut context, still consistent.
        generate(&mut ctx, engine, &mut sampler, &policy(), 30);
        assert_body_consistent(&ctx);
        assert_matches_fresh_prefill(&ctx, engine, "30 tokens after the cut");
        cuts_checked += 1;
    }
    assert_eq!(cuts_checked, 6);
}

#[test]
fn human_input_at_the_end_appends_without_a_cut() {
    let loaded = engine(0);
    let engine = &loaded.engine;
    let mut ctx = new_context(engine, ContextConfig::for_limit(512));
    ctx.insert_human(&[NoteEvent::on(0, 3, 50, 2)]).unwrap();
    let before = ctx.tokens();
    ctx.insert_human(&[NoteEvent::off(30, 3, 50), NoteEvent::on(30, 3, 52, 2)])
        .unwrap();
    assert_eq!(ctx.stats().prefix_cuts, 0);
    assert!(ctx.tokens().starts_with(&before));
    assert_eq!(
        String::from_utf8_lossy(ctx.body_text()),
        " 3+050c P_24 P_6 3-0503+052c"
    );
    assert_body_consistent(&ctx);
    assert_matches_fresh_prefill(&ctx, engine, "after appending");
}

#[test]
fn flushes_keep_the_header_cut_at_a_word_and_match_a_fresh_prefill() {
    let loaded = engine(0);
    let engine = &loaded.engine;
    let params = engine.params;
    let header = engine.header(None, None).unwrap();
    let mut cfg = SessionConfig::defaults(&params);
    cfg.seed = 3;
    cfg.sampling = SamplingParams {
        temperature: 1.0,
        top_p: 1.0,
    };
    cfg.policy = policy();
    cfg.context = ContextConfig {
        limit: 64,
        flush_start: 48,
        keep: 32,
        step_chunk: 2,
    };
    cfg.max_steps_per_advance = 1;
    let mut session = Session::new(engine.clone(), &header, cfg).unwrap();
    let header_tokens = session.context().header_tokens().to_vec();
    let human = human_part(&music21_file("bach-bwv1.6.mid"), &params, 480);
    let mut next = 0;
    let mut flushes = 0;
    let mut tokens_at_last_flush = 0;
    let mut swaps_checked = 0;
    let mut max_len = 0;
    let mut now = 0u64;
    let mut step = 0u64;
    while now < 480 {
        while next < human.len() && human[next].tick <= now {
            session.human(human[next]);
            next += 1;
        }
        session.advance(now).unwrap();
        if session.is_ahead(now) {
            session.idle(4).unwrap();
        }
        let ctx = session.context();
        max_len = max_len.max(ctx.cache_len());
        if ctx.stats().flushes > flushes {
            flushes = ctx.stats().flushes;
            // The header is kept, the body starts at a word, and the cache is a fresh prefill's.
            assert_eq!(ctx.header_tokens(), &header_tokens[..]);
            assert_eq!(&ctx.tokens()[..header_tokens.len()], &header_tokens[..]);
            let body = ctx.body_text();
            assert_eq!(body.first(), Some(&b' '), "the kept body starts at a word");
            let first_word = body[1..].split(|b| *b == b' ').next().unwrap();
            let is_time = first_word.starts_with(b"P_");
            let is_instant = first_word.first().is_some_and(|b| b.is_ascii_hexdigit());
            assert!(is_time || is_instant, "first kept word {first_word:?}");
            // The cut kept at most 32 tokens; what came in while the new cache was built is
            // added, and the swap leaves room under the 64-token limit.
            assert!(ctx.len() <= 56, "a flush kept {} of 64 tokens", ctx.len());
            assert_body_consistent(ctx);
            assert_matches_fresh_prefill(ctx, engine, "right after a flush");
            assert!(
                ctx.stats().tokens_generated > tokens_at_last_flush,
                "generation goes on"
            );
            tokens_at_last_flush = ctx.stats().tokens_generated;
            swaps_checked += 1;
        } else if step.is_multiple_of(25) {
            assert_body_consistent(ctx);
            assert_matches_fresh_prefill(ctx, engine, "between flushes");
        }
        if session.is_ahead(now) {
            now += 1;
        }
        step += 1;
    }
    assert!(
        swaps_checked >= 3,
        "only {swaps_checked} flushes in the run"
    );
    assert!(
        max_len <= 64,
        "the cache held {max_len} tokens, over the limit"
    );
    let stats = session.stats();
    assert_eq!(stats.fallbacks, 0);
    assert!(
        stats.context.prefix_cuts > 0,
        "the human part never cut the model's text"
    );
}

#[test]
fn bad_context_sizes_are_refused() {
    let loaded = engine(0);
    let engine = &loaded.engine;
    let header = engine.header(None, None).unwrap();
    let too_long = ContextConfig::for_limit(4096); // the model has 1024 positions
    let err = Context::new(
        engine.model.clone(),
        engine.tokenizer.clone(),
        engine.table.clone(),
        engine.params,
        &header,
        engine.opener,
        too_long,
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("positions"), "{err}");
    assert!(ContextConfig::for_limit(8).validate().is_err());
    let _ = LanguageParams::default();
}
