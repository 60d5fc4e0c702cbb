//! The property the mask exists for: whatever a model samples — here a random-weights model,
//! which spreads its probability over everything the mask lets through — the output is
//! well-formed channel-0 text, no channel-0 note lasts past `max_note_ticks` (+1 tick when a
//! human instant takes its place), and after `stop()` every note-on has its note-off.
//! Thousands of tokens, several sampling settings, with and without real human input, with
//! contexts small enough to force prefix cuts and flushes.

mod support;

use midicopilot_engine::decode::{ContextConfig, Policy, SamplingParams};
use midicopilot_engine::events::{events_to_text, parse_text, EventKind, NoteEvent};
use midicopilot_engine::session::{Session, SessionConfig};
use support::*;

struct Case {
    name: &'static str,
    seed: u64,
    temperature: f32,
    top_p: f32,
    max_polyphony: u32,
    max_note_ticks: u64,
    context: ContextConfig,
    /// (music21 file, ticks of it to play)
    human: Option<(&'static str, u64)>,
    ticks: u64,
}

struct Outcome {
    tokens: u64,
    flushes: u64,
    cuts: u64,
    notes: usize,
}

fn run(case: &Case, listen: bool) -> Outcome {
    let loaded = engine(0);
    let engine = &loaded.engine;
    let params = engine.params;
    let mut cfg = SessionConfig::defaults(&params);
    cfg.seed = case.seed;
    cfg.sampling = SamplingParams {
        temperature: case.temperature,
        top_p: case.top_p,
    };
    cfg.policy = Policy {
        max_note_ticks: case.max_note_ticks,
        max_polyphony: case.max_polyphony,
    };
    cfg.context = case.context;
    cfg.listen = listen;
    let header = engine.header(None, None).unwrap();
    let mut session = Session::new(engine.clone(), &header, cfg).unwrap();
    let human = match case.human {
        Some((file, until)) => human_part(&music21_file(file), &params, until),
        None => Vec::new(),
    };
    let mut model: Vec<NoteEvent> = Vec::new();
    let mut next = 0;
    for now in 0..=case.ticks {
        while next < human.len() && human[next].tick <= now {
            session.human(human[next]);
            next += 1;
        }
        let released = session
            .advance(now)
            .unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
        model.extend(released);
        if session.is_ahead(now) {
            session.idle(8).unwrap();
        }
    }
    assert_body_consistent(session.context());
    model.extend(session.stop(case.ticks));
    let stats = session.stats();
    let name = case.name;

    assert_eq!(stats.fallbacks, 0, "{name}: the mask was empty");
    assert!(
        model.iter().all(|e| e.channel == 0),
        "{name}: the model played off channel 0"
    );

    // Every channel-0 note-on has its note-off, and no note is longer than the limit.
    let mut on: [Option<u64>; 128] = [None; 128];
    let mut notes = 0;
    let mut sorted_model = model.clone();
    sorted_model.sort();
    for e in &sorted_model {
        let slot = &mut on[usize::from(e.pitch)];
        match e.kind {
            EventKind::On { .. } => {
                assert!(
                    slot.is_none(),
                    "{name}: second note-on of a sounding pitch: {e:?}"
                );
                *slot = Some(e.tick);
                notes += 1;
            }
            EventKind::Off => {
                let start = slot
                    .take()
                    .unwrap_or_else(|| panic!("{name}: note-off of a silent pitch: {e:?}"));
                let len = e.tick - start;
                assert!(
                    len <= case.max_note_ticks + 1,
                    "{name}: pitch {} held {len} ticks (limit {})",
                    e.pitch,
                    case.max_note_ticks
                );
            }
        }
    }
    assert!(
        on.iter().all(Option::is_none),
        "{name}: notes left sounding after stop()"
    );

    // The whole performance, human and model, is text the strict parser accepts, unchanged.
    let mut all: Vec<NoteEvent> = human.iter().chain(model.iter()).copied().collect();
    all.sort();
    let text = events_to_text(&all, &params, &header);
    let (meta, parsed) = parse_text(&text, &params)
        .unwrap_or_else(|e| panic!("{name}: the output does not parse: {e}\n{text}"));
    assert_eq!(meta, header);
    assert_eq!(parsed, all, "{name}: the output text does not round-trip");

    Outcome {
        tokens: stats.tokens,
        flushes: stats.context.flushes,
        cuts: stats.context.prefix_cuts,
        notes,
    }
}

#[test]
fn sampled_text_never_hangs_or_breaks_a_note() {
    let cases = [
        Case {
            name: "chorale, small context, 4 voices",
            seed: 1,
            temperature: 1.0,
            top_p: 1.0,
            max_polyphony: 4,
            max_note_ticks: 24,
            context: ContextConfig {
                limit: 96,
                flush_start: 72,
                keep: 48,
                step_chunk: 4,
            },
            human: Some(("bach-bwv1.6.mid", 480)),
            ticks: 500,
        },
        Case {
            name: "alone, hot sampling",
            seed: 2,
            temperature: 1.5,
            top_p: 1.0,
            max_polyphony: 8,
            max_note_ticks: 48,
            context: ContextConfig::for_limit(256),
            human: None,
            ticks: 400,
        },
        Case {
            name: "two parts, one voice, short notes",
            seed: 3,
            temperature: 0.8,
            top_p: 0.9,
            max_polyphony: 1,
            max_note_ticks: 6,
            context: ContextConfig {
                limit: 128,
                flush_start: 96,
                keep: 64,
                step_chunk: 8,
            },
            human: Some(("beach-prayer_of_a_tired_child.mid", 400)),
            ticks: 420,
        },
        Case {
            name: "greedy, tiny context",
            seed: 4,
            temperature: 0.0,
            top_p: 1.0,
            max_polyphony: 2,
            max_note_ticks: 12,
            context: ContextConfig {
                limit: 48,
                flush_start: 36,
                keep: 24,
                step_chunk: 2,
            },
            human: Some(("bach-bwv1.6.mid", 300)),
            ticks: 320,
        },
    ];
    let mut tokens = 0;
    let mut flushes = 0;
    let mut cuts = 0;
    // Each case twice: the model playing wherever its text goes, and leaving instants to the
    // band (the default), which waits instead and so writes fewer tokens.
    for (case, listen) in cases.iter().flat_map(|c| [(c, false), (c, true)]) {
        let o = run(case, listen);
        assert!(o.notes > 0, "{}: the model played no note", case.name);
        eprintln!(
            "{} (listen {listen}): {} tokens, {} notes, {} flushes, {} prefix cuts",
            case.name, o.tokens, o.notes, o.flushes, o.cuts
        );
        tokens += o.tokens;
        flushes += o.flushes;
        cuts += o.cuts;
    }
    assert!(tokens >= 3000, "only {tokens} tokens sampled");
    assert!(
        flushes >= 5 && cuts >= 20,
        "{flushes} flushes, {cuts} cuts: the cases missed the policy"
    );
}
