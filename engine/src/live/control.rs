//! The live engine's control channel: JSON lines on stdin, JSON status lines on stdout
//! (docs/LIVE.md, "Control channel").
//!
//! ```text
//! stdin:  {"cmd":"switch","name":"song2","bundle":"/abs/path","genre":"BLUES","bpm":96}
//!         {"cmd":"stop"}
//! stdout: {"event":"ready","backend":"jack","client":"midicopilot"}
//!         {"event":"loading","name":"song2","bundle":"/abs/path"}
//!         {"event":"switched","name":"song2",...}
//!         {"event":"error","name":"song2","message":"..."}
//! ```
//!
//! - [`parse_line`] turns one line into a [`Command`] (or a one-line error); the fields of a
//!   switch are exactly the `jack`/`alsa` flags that shape a session.
//! - [`spawn_stdin_reader`] reads stdin on its own thread: `stop` sets the run's stop flag at
//!   once (the decoder thread may be busy), `switch` goes to the decoder thread through a
//!   channel ([`super::switch::Switcher`] polls it between iterations). End of input ends the
//!   reader, not the run (an engine started with stdin on /dev/null plays on).
//! - [`Status`] writes status lines from any thread without blocking it: lines go through a
//!   channel to a writer thread that owns stdout (a host that stops reading cannot stall the
//!   decoder thread).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

/// Longest control line accepted (a switch is a few hundred bytes).
pub const MAX_LINE: usize = 64 * 1024;

/// One `switch` command: the song's name and the session settings it changes. A field left out
/// keeps the running value; `genre`, `part`, `seed`, `temperature`, `top_p` and `max_polyphony`
/// may also be `null`, which means the default (the bundle's recommendation, else its first genre
/// / part word and the engine's sampling; seed 0).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchRequest {
    pub name: String,
    pub bundle: Option<PathBuf>,
    #[serde(default, deserialize_with = "present")]
    pub genre: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub part: Option<Option<String>>,
    pub bpm: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    pub temperature: Option<Option<f32>>,
    #[serde(default, deserialize_with = "present")]
    pub top_p: Option<Option<f32>>,
    #[serde(default, deserialize_with = "present")]
    pub seed: Option<Option<u64>>,
    pub context: Option<usize>,
    pub lookahead_ticks: Option<u64>,
    pub release_horizon_ms: Option<f64>,
    pub max_note_ticks: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pub max_polyphony: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    pub weights: Option<Option<crate::model::WeightFormat>>,
}

/// A field that is present (even as `null`) becomes `Some(..)`; absent stays `None` (default).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A control command.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    Switch(Box<SwitchRequest>),
    Stop,
}

/// Parse one control line: `Ok(None)` for a blank line, else the command or a one-line reason.
pub fn parse_line(line: &str) -> Result<Option<Command>, String> {
    let text = line.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() > MAX_LINE {
        return Err(format!(
            "a control line of {} bytes (at most {MAX_LINE})",
            text.len()
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
    let Value::Object(map) = &value else {
        return Err(format!(
            "expected a JSON object like {{\"cmd\":\"stop\"}}, got {text}"
        ));
    };
    match map.get("cmd") {
        None => return Err("missing \"cmd\" (\"switch\" or \"stop\")".into()),
        Some(Value::String(c)) if c == "switch" || c == "stop" => {}
        Some(other) => {
            return Err(format!(
                "unknown cmd {other} (expected \"switch\" or \"stop\")"
            ));
        }
    }
    let kind = map
        .get("cmd")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    if kind == "stop" {
        if let Some(extra) = map.keys().find(|k| *k != "cmd") {
            return Err(format!(
                "bad stop command: unknown field `{extra}` (stop takes none)"
            ));
        }
    }
    // serde says "unknown field `x`, expected one of ..." / "invalid type: ...": keep it.
    let cmd: Command =
        serde_json::from_value(value).map_err(|e| format!("bad {kind} command: {e}"))?;
    if let Command::Switch(req) = &cmd {
        if req.name.trim().is_empty() {
            return Err("bad switch command: \"name\" must not be empty".into());
        }
    }
    Ok(Some(cmd))
}

/// Writes status lines (one JSON object each) to stdout from a writer thread.
#[derive(Clone)]
pub struct Status {
    tx: Option<mpsc::Sender<Value>>,
}

impl Status {
    /// A status writer on stdout (its thread ends when every `Status` clone is dropped).
    pub fn stdout() -> Self {
        let (tx, rx) = mpsc::channel::<Value>();
        let spawned = std::thread::Builder::new()
            .name("midicopilot-status".into())
            .spawn(move || {
                let mut broken = false;
                for value in rx.iter() {
                    if broken {
                        continue; // the reader went away (closed pipe): drop the rest quietly
                    }
                    let mut out = std::io::stdout().lock();
                    broken = writeln!(out, "{value}").and_then(|()| out.flush()).is_err();
                }
            });
        Self {
            tx: spawned.ok().map(|_| tx),
        }
    }

    /// A status writer that sends into a channel (tests).
    pub fn channel() -> (Self, mpsc::Receiver<Value>) {
        let (tx, rx) = mpsc::channel();
        (Self { tx: Some(tx) }, rx)
    }

    /// A status writer that drops everything.
    pub fn none() -> Self {
        Self { tx: None }
    }

    /// Send one status object (never blocks).
    pub fn send(&self, value: Value) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(value);
        }
    }

    pub fn error(&self, name: Option<&str>, message: &str) {
        match name {
            Some(n) => self.send(json!({"event": "error", "name": n, "message": message})),
            None => self.send(json!({"event": "error", "message": message})),
        }
    }
}

/// Read control lines from `input` until it ends: `stop` sets `stop` (and is the last command
/// read), a switch goes to `switches`, a bad line is one error status line. Returns how many
/// lines were read.
pub fn read_commands(
    input: impl BufRead,
    switches: &mpsc::Sender<SwitchRequest>,
    stop: &AtomicBool,
    status: &Status,
) -> u64 {
    let mut n = 0;
    for line in input.lines() {
        n += 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                status.error(None, &format!("control: line {n}: cannot read: {e}"));
                if e.kind() == std::io::ErrorKind::InvalidData {
                    continue; // not UTF-8: report it and read on
                }
                break;
            }
        };
        match parse_line(&line) {
            Ok(None) => {}
            Ok(Some(Command::Stop)) => {
                stop.store(true, Ordering::Release);
                status.send(json!({"event": "stopping", "reason": "command"}));
                break;
            }
            Ok(Some(Command::Switch(req))) => {
                if switches.send(*req).is_err() {
                    break; // the decoder thread is gone: the run is ending
                }
            }
            Err(e) => status.error(None, &format!("control: line {n}: {e}")),
        }
    }
    n
}

/// Read the control channel from stdin on its own thread (see the module docs). Returns the
/// receiving end of the switch requests.
pub fn spawn_stdin_reader(stop: Arc<AtomicBool>, status: Status) -> mpsc::Receiver<SwitchRequest> {
    let (tx, rx) = mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("midicopilot-control".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            read_commands(stdin.lock(), &tx, &stop, &status);
        });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(line: &str) -> SwitchRequest {
        match parse_line(line) {
            Ok(Some(Command::Switch(r))) => *r,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn a_full_switch_parses_every_field() {
        let r = switch(
            r#"{"cmd":"switch","name":"song2","bundle":"/abs/b","genre":"BLUES","part":"BASS",
               "bpm":96.5,"temperature":0.8,"top_p":0.9,"seed":7,"context":256,
               "lookahead_ticks":12,"release_horizon_ms":30,"max_note_ticks":96,
               "max_polyphony":3}"#
                .replace('\n', " ")
                .as_str(),
        );
        assert_eq!(r.name, "song2");
        assert_eq!(r.bundle, Some(PathBuf::from("/abs/b")));
        assert_eq!(r.genre, Some(Some("BLUES".into())));
        assert_eq!(r.part, Some(Some("BASS".into())));
        assert_eq!(r.bpm, Some(96.5));
        assert_eq!(r.temperature, Some(Some(0.8)));
        assert_eq!(r.top_p, Some(Some(0.9)));
        assert_eq!(r.seed, Some(Some(7)));
        assert_eq!(r.context, Some(256));
        assert_eq!(r.lookahead_ticks, Some(12));
        assert_eq!(r.release_horizon_ms, Some(30.0));
        assert_eq!(r.max_note_ticks, Some(96));
        assert_eq!(r.max_polyphony, Some(Some(3)));
    }

    #[test]
    fn absent_null_and_given_are_three_different_things() {
        let r = switch(r#"{"cmd":"switch","name":"a"}"#);
        assert_eq!(
            (r.genre, r.part, r.seed, r.bundle, r.bpm),
            (None, None, None, None, None)
        );
        let r = switch(r#"{"cmd":"switch","name":"a","genre":null,"seed":null}"#);
        assert_eq!(r.genre, Some(None));
        assert_eq!(r.seed, Some(None));
        assert_eq!(r.part, None);
    }

    #[test]
    fn stop_and_blank_lines() {
        assert_eq!(parse_line(r#"{"cmd":"stop"}"#), Ok(Some(Command::Stop)));
        assert_eq!(
            parse_line("  {\"cmd\": \"stop\"}  \r"),
            Ok(Some(Command::Stop))
        );
        assert_eq!(parse_line(""), Ok(None));
        assert_eq!(parse_line("   "), Ok(None));
    }

    #[test]
    fn bad_lines_are_one_line_reasons() {
        let cases = [
            ("{\"cmd\":\"switch\"", "not a JSON object"),
            ("[1,2]", "expected a JSON object"),
            ("{\"name\":\"x\"}", "missing \"cmd\""),
            ("{\"cmd\":\"play\"}", "unknown cmd \"play\""),
            ("{\"cmd\":3}", "unknown cmd 3"),
            ("{\"cmd\":\"switch\"}", "missing field `name`"),
            ("{\"cmd\":\"switch\",\"name\":\"\"}", "must not be empty"),
            (
                "{\"cmd\":\"switch\",\"name\":\"a\",\"tempratur\":1}",
                "unknown field `tempratur`",
            ),
            (
                "{\"cmd\":\"switch\",\"name\":\"a\",\"bpm\":\"fast\"}",
                "invalid type",
            ),
            (
                "{\"cmd\":\"switch\",\"name\":\"a\",\"seed\":-1}",
                "invalid value",
            ),
            ("{\"cmd\":\"stop\",\"now\":true}", "unknown field `now`"),
        ];
        for (line, want) in cases {
            let err = parse_line(line).expect_err(line);
            assert!(err.contains(want), "{line}: {err}");
            assert!(!err.contains('\n'), "{line}: {err}");
        }
    }

    #[test]
    fn the_reader_routes_switches_stops_and_reports_bad_lines() {
        let input = "{\"cmd\":\"switch\",\"name\":\"a\"}\nnonsense\n\n\
                     {\"cmd\":\"switch\",\"name\":\"b\"}\n{\"cmd\":\"stop\"}\n\
                     {\"cmd\":\"switch\",\"name\":\"after-stop\"}\n";
        let (tx, rx) = mpsc::channel();
        let stop = AtomicBool::new(false);
        let (status, lines) = Status::channel();
        let read = read_commands(std::io::Cursor::new(input), &tx, &stop, &status);
        assert_eq!(read, 5);
        let names: Vec<String> = rx.try_iter().map(|r| r.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(stop.load(Ordering::Acquire));
        let events: Vec<Value> = lines.try_iter().collect();
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0]["event"], "error");
        assert!(events[0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("control: line 2: ")));
        assert_eq!(events[1], json!({"event": "stopping", "reason": "command"}));
    }

    #[test]
    fn end_of_input_is_not_a_stop() {
        let (tx, _rx) = mpsc::channel();
        let stop = AtomicBool::new(false);
        read_commands(std::io::Cursor::new(""), &tx, &stop, &Status::none());
        assert!(!stop.load(Ordering::Acquire));
    }
}
