//! The ALSA sequencer ports: `--input`/`--output` patterns, matching them against the
//! sequencer's ports, and opening the connections.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use regex::Regex;

use super::input::InputSide;
use super::timer::MicroClock;
use super::{AlsaOptions, SEQ_DEVICE};
use crate::live::ports::InputMode;
use crate::live::Shared;

/// One `--input PATTERN` (pass) or `--input-channel CH=PATTERN`.
#[derive(Debug, Clone)]
pub struct InputPattern {
    pub pattern: Regex,
    pub mode: InputMode,
}

impl InputPattern {
    /// `REGEX`: the ports' channels are kept (channel 0 moves to 1).
    pub fn pass(text: &str) -> Result<Self> {
        Ok(Self {
            pattern: compile(text, "--input")?,
            mode: InputMode::Pass,
        })
    }

    /// `CH=REGEX` (CH 1–15): everything from those ports is channel CH.
    pub fn assigned(text: &str) -> Result<Self> {
        let Some((ch, pat)) = text.split_once('=') else {
            bail!("--input-channel {text}: expected CH=PATTERN (CH 1–15)");
        };
        let ch = match ch.trim().parse::<u8>() {
            Ok(c) if (1..=15).contains(&c) => c,
            _ => bail!("--input-channel {text}: '{ch}' is not a channel 1–15 (0 is the model's)"),
        };
        Ok(Self {
            pattern: compile(pat, "--input-channel")?,
            mode: InputMode::Assign(ch),
        })
    }
}

/// A port pattern (Rust `regex` syntax, searched anywhere in the port's name).
pub fn compile(text: &str, flag: &str) -> Result<Regex> {
    if text.is_empty() {
        bail!("{flag}: empty pattern");
    }
    Regex::new(text).map_err(|e| {
        let why = e.to_string();
        let last = why.lines().last().unwrap_or("invalid").trim().to_string();
        anyhow::anyhow!("{flag} {text:?}: bad regular expression: {last}")
    })
}

/// Which of `names` each pattern matches (indices, in `names` order, no repeats), skipping the
/// engine's own ports (`<own_client>:…`); also the patterns that matched nothing.
pub fn match_ports<'a>(
    names: &[String],
    patterns: impl IntoIterator<Item = &'a Regex>,
    own_client: &str,
) -> (Vec<usize>, Vec<String>) {
    let own = format!("{own_client}:");
    let mut hits = Vec::new();
    let mut unmatched = Vec::new();
    for pat in patterns {
        let mut any = false;
        for (i, name) in names.iter().enumerate() {
            if name.starts_with(&own) || !pat.is_match(name) {
                continue;
            }
            any = true;
            if !hits.contains(&i) {
                hits.push(i);
            }
        }
        if !any {
            unmatched.push(pat.as_str().to_string());
        }
    }
    hits.sort_unstable();
    (hits, unmatched)
}

/// One clear line when there is no ALSA sequencer on this machine.
pub fn check_sequencer(device: &Path) -> Result<()> {
    if !device.exists() {
        bail!(
            "no ALSA sequencer ({} is missing): load it with `modprobe snd-seq` (a virtual MIDI \
             port: `modprobe snd-virmidi`), or use the jack backend",
            device.display()
        );
    }
    Ok(())
}

fn seq_error(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot open the ALSA sequencer ({SEQ_DEVICE}) for {what}: check that you may use it \
         (the audio group) or use the jack backend"
    )
}

/// The ALSA ports this run opens, listed before the model loads (so a bad setup fails fast).
pub struct Ports {
    pub input_names: Vec<String>,
    pub output_names: Vec<String>,
}

/// List the sequencer's ports (readable ones are inputs for us, writable ones outputs).
pub fn list_ports(client_name: &str) -> Result<Ports> {
    let mi = midir::MidiInput::new(client_name).map_err(|_| seq_error("input"))?;
    let mo = midir::MidiOutput::new(client_name).map_err(|_| seq_error("output"))?;
    let input_names = mi
        .ports()
        .iter()
        .filter_map(|p| mi.port_name(p).ok())
        .collect();
    let output_names = mo
        .ports()
        .iter()
        .filter_map(|p| mo.port_name(p).ok())
        .collect();
    Ok(Ports {
        input_names,
        output_names,
    })
}

type Conn = midir::MidiInputConnection<()>;

/// Open the inputs: the virtual port `<client>:in` (pass) and every port a pattern matches.
pub(super) fn open_inputs(
    opts: &AlsaOptions,
    clock: MicroClock,
    side: &Arc<Mutex<InputSide>>,
    shared: &Arc<Shared>,
) -> Result<(Vec<Conn>, Vec<String>)> {
    use midir::os::unix::VirtualInput;

    let mut conns = Vec::new();
    let mut names = Vec::new();
    let callback = |mode: InputMode, base: u64| {
        let (side, shared) = (side.clone(), shared.clone());
        move |stamp: u64, bytes: &[u8], _: &mut ()| {
            let frame = base.saturating_add(stamp).min(clock.now());
            if let Ok(mut s) = side.lock() {
                s.receive(&shared, mode, frame, bytes);
            }
        }
    };
    let mut midi_in = midir::MidiInput::new(&opts.client_name).map_err(|_| seq_error("input"))?;
    midi_in.ignore(midir::Ignore::None); // clock is tempo information; SysEx is filtered later
    let base = clock.now();
    let conn = midi_in
        .create_virtual("in", callback(InputMode::Pass, base), ())
        .map_err(|e| anyhow::anyhow!("creating the ALSA port {}:in: {e}", opts.client_name))?;
    conns.push(conn);
    names.push(format!("{}:in", opts.client_name));

    for spec in &opts.inputs {
        let mut probe = midir::MidiInput::new(&opts.client_name).map_err(|_| seq_error("input"))?;
        probe.ignore(midir::Ignore::None);
        let ports = probe.ports();
        let port_names: Vec<String> = ports
            .iter()
            .map(|p| probe.port_name(p).unwrap_or_default())
            .collect();
        let (hits, unmatched) = match_ports(&port_names, [&spec.pattern], &opts.client_name);
        for pat in unmatched {
            eprintln!("midicopilot-engine: alsa: warning: --input '{pat}' matched no ALSA port");
        }
        for i in hits {
            let mut m = midir::MidiInput::new(&opts.client_name).map_err(|_| seq_error("input"))?;
            m.ignore(midir::Ignore::None);
            let before = clock.now();
            let conn = m
                .connect(&ports[i], "in", callback(spec.mode, before), ())
                .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", port_names[i]))?;
            conns.push(conn);
            names.push(port_names[i].clone());
        }
    }
    Ok((conns, names))
}

/// Open the outputs: the virtual port `<client>:out` and every port a pattern matches.
pub(super) fn open_outputs(
    opts: &AlsaOptions,
) -> Result<(Vec<midir::MidiOutputConnection>, Vec<String>)> {
    use midir::os::unix::VirtualOutput;

    let mut conns = Vec::new();
    let mut names = Vec::new();
    let mo = midir::MidiOutput::new(&opts.client_name).map_err(|_| seq_error("output"))?;
    conns
        .push(mo.create_virtual("out").map_err(|e| {
            anyhow::anyhow!("creating the ALSA port {}:out: {e}", opts.client_name)
        })?);
    names.push(format!("{}:out", opts.client_name));
    let probe = midir::MidiOutput::new(&opts.client_name).map_err(|_| seq_error("output"))?;
    let ports = probe.ports();
    let port_names: Vec<String> = ports
        .iter()
        .map(|p| probe.port_name(p).unwrap_or_default())
        .collect();
    let (hits, unmatched) = match_ports(&port_names, &opts.outputs, &opts.client_name);
    for pat in unmatched {
        eprintln!("midicopilot-engine: alsa: warning: --output '{pat}' matched no ALSA port");
    }
    for i in hits {
        let m = midir::MidiOutput::new(&opts.client_name).map_err(|_| seq_error("output"))?;
        let conn = m
            .connect(&ports[i], "out")
            .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", port_names[i]))?;
        conns.push(conn);
        names.push(port_names[i].clone());
    }
    Ok((conns, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ports_match_by_search_skipping_our_own() {
        let ports = names(&[
            "Midi Through:Midi Through Port-0 14:0",
            "Keystation 49:Keystation 49 MIDI 1 20:0",
            "MPC Studio:MPC Studio MIDI 1 24:0",
            "midicopilot:out 128:1",
            "FLUID Synth (1234):Synth input port (1234:0) 129:0",
        ]);
        let pats = [
            Regex::new("Keystation").unwrap(),
            Regex::new("^MPC").unwrap(),
        ];
        let (hits, unmatched) = match_ports(&ports, &pats, "midicopilot");
        assert_eq!(hits, vec![1, 2]);
        assert!(unmatched.is_empty());
        // our own ports are never matched, even by a catch-all; a miss is reported
        let pats = [Regex::new(".").unwrap(), Regex::new("Juno").unwrap()];
        let (hits, unmatched) = match_ports(&ports, &pats, "midicopilot");
        assert_eq!(hits, vec![0, 1, 2, 4]);
        assert_eq!(unmatched, vec!["Juno".to_string()]);
        // two patterns matching one port open it once
        let pats = [
            Regex::new("FLUID").unwrap(),
            Regex::new("Synth input").unwrap(),
        ];
        assert_eq!(match_ports(&ports, &pats, "midicopilot").0, vec![4]);
    }

    #[test]
    fn input_patterns_parse_or_say_why_not() {
        let p = InputPattern::pass("Keystation.*MIDI 1").unwrap();
        assert_eq!(p.mode, InputMode::Pass);
        let p = InputPattern::assigned("9=^MPC").unwrap();
        assert_eq!(p.mode, InputMode::Assign(9));
        assert!(p.pattern.is_match("MPC Studio:MPC Studio MIDI 1 24:0"));
        // the pattern may itself hold '='
        assert!(InputPattern::assigned("3=a=b")
            .unwrap()
            .pattern
            .is_match("xa=b"));
        let e = |r: Result<InputPattern>| format!("{:#}", r.unwrap_err());
        assert!(e(InputPattern::assigned("0=x")).contains("'0' is not a channel 1–15"));
        assert!(e(InputPattern::assigned("16=x")).contains("'16' is not a channel"));
        assert!(e(InputPattern::assigned("x")).contains("expected CH=PATTERN"));
        let bad = e(InputPattern::pass("MPC("));
        assert!(
            bad.starts_with("--input \"MPC(\": bad regular expression"),
            "{bad}"
        );
        assert!(!bad.contains('\n'));
        assert!(e(InputPattern::pass("")).contains("empty pattern"));
    }

    #[test]
    fn no_sequencer_is_one_line() {
        let e = format!(
            "{:#}",
            check_sequencer(Path::new("/no/such/seq")).unwrap_err()
        );
        assert!(
            e.starts_with("no ALSA sequencer (/no/such/seq is missing)"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }
}
