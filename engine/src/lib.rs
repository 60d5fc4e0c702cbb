//! midicopilot's engine: the event language, the model, the decoder loop and its backends.

pub mod backend;
pub mod bundle;
pub mod cmd;
pub mod context;
pub mod events;
pub mod live;
pub mod model;
pub mod sampler;
pub mod session;
pub mod tempo; // the live JACK client (live helper)
