//! midicopilot's engine: the event language, the model, the decoder loop and its backends.

pub mod cmd;
pub mod events;
pub mod bundle;
pub mod model;
pub mod sampler;
pub mod tempo;
pub mod backend;
pub mod context;
pub mod session;
pub mod live; // the live JACK client (live helper)
